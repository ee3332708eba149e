"""The errors kfreeze raises on purpose: one family, one sentence each.

Every error kfreeze means to raise derives from :class:`KfreezeError`: what is wrong
(``message``), what to do about it (``hint``, may be empty) and a short tag (``kind``) that the
app uses to offer a way out (``download``: open with random weights instead). The command line
and the app's error screen render it in one place each (:func:`describe`); anything else that
escapes is a bug in kfreeze, and :func:`describe` says so in one sentence too.

The family, from where the problem is:

- :class:`UsageError`: the command line (an invalid regex, a missing terminal);
- :class:`ConfigError`: ``~/.config/kfreeze/config.toml``;
- :class:`TomlError`: a TOML file that cannot be read;
- :class:`LoadError`: a source that cannot be turned into a model (and :class:`LegacyError`,
  a file from an older Keras that cannot be opened safely);
- :class:`PlanError`: a plan, head or phase that does not fit the model;
- :class:`ExportError`: an export that cannot or did not work;
- :class:`OutputError`: standard output that took no more.

Nothing here imports Keras.
"""

from __future__ import annotations

from kfreeze_tui.core.wording import sentence

__all__ = [
    "ConfigError",
    "ExportError",
    "KfreezeError",
    "LegacyError",
    "LoadError",
    "OutputError",
    "PlanError",
    "TomlError",
    "UsageError",
    "describe",
    "first_line",
]

#: The sentence's tail for an error kfreeze did not mean to raise.
BUG_TAIL = "(this is a bug in kfreeze; run with KFREEZE_DEBUG=1 for the traceback)"


class KfreezeError(Exception):
    """An error kfreeze raises on purpose: one sentence for the user.

    Args:
        message: what is wrong with this input (a trailing full stop is dropped).
        hint: what to do about it, or "".
        kind: a short machine-readable tag (``missing``, ``empty``, ``download`` ...).
    """

    def __init__(self, message: str, hint: str = "", kind: str = "error") -> None:
        self.message = message.rstrip().rstrip(".")
        self.hint = hint.rstrip().rstrip(".")
        self.kind = kind
        super().__init__(self.sentence)

    @property
    def sentence(self) -> str:
        """The message and the hint as one sentence."""
        if self.hint:
            return sentence(f"{self.message}: {self.hint}")
        return sentence(self.message)


class UsageError(KfreezeError):
    """Bad command-line input that argparse cannot see (an invalid regex, say)."""


class ConfigError(KfreezeError):
    """The config file cannot be used."""


class TomlError(KfreezeError):
    """A TOML file that cannot be read or is not TOML."""


class LoadError(KfreezeError):
    """A source could not be turned into a model."""


class LegacyError(LoadError):
    """A file from an older Keras that cannot be opened, or not safely."""


class PlanError(KfreezeError):
    """A plan, head or phase that does not fit the model."""


class ExportError(KfreezeError):
    """An export that cannot or did not work."""


class OutputError(KfreezeError):
    """Standard output took no more: a full disk or quota, a device that failed."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none), cut at
    200 characters: Keras's messages run to pages, a sentence needs one line."""
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0].strip()
    return line if len(line) <= 200 else line[:197] + "..."


def describe(exc: BaseException) -> str:
    """One sentence for any exception: the error's own for kfreeze's, and for anything else
    its type and first line, said to be a bug."""
    if isinstance(exc, KfreezeError):
        return exc.sentence
    return f"unexpected {type(exc).__name__}: {first_line(exc)} {BUG_TAIL}."
