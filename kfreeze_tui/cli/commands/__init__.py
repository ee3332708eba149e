"""One module per command, each with ``run(args) -> exit code``; :func:`kfreeze_tui.cli.run`
imports a command's module only when that command runs."""
