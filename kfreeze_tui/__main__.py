"""``python -m kfreeze_tui``: the same as the ``kfreeze`` command."""

from kfreeze_tui.cli import main

if __name__ == "__main__":
    main()
