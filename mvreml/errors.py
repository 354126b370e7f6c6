"""Typed errors and warnings of mvreml.

Every exception names the piece of input at fault (column, term, level, animal) in its
message and, where useful, carries it as an attribute so that programs embedding mvreml
can react without parsing text.
"""
from __future__ import annotations


class MvremlError(Exception):
    """Base class of every error raised by mvreml."""


class DataError(MvremlError, ValueError):
    """Bad data: a missing or non-numeric column, non-finite values, bad weights.

    Attributes
    ----------
    column : str or None
        The column at fault.
    """

    def __init__(self, message: str, column: str | None = None):
        super().__init__(message)
        self.column = column


class FormulaError(MvremlError, ValueError):
    """A formula that cannot be parsed or names something that does not exist.

    Attributes
    ----------
    term : str or None
        The piece of formula at fault.
    """

    def __init__(self, message: str, term: str | None = None):
        super().__init__(message)
        self.term = term


class PedigreeError(MvremlError, ValueError):
    """A pedigree that is not a pedigree: cycles, conflicting parents, sex conflicts.

    Attributes
    ----------
    animals : list
        The animals at fault.
    """

    def __init__(self, message: str, animals=None):
        super().__init__(message)
        self.animals = list(animals) if animals is not None else []


class RelmatError(MvremlError, ValueError):
    """A relationship matrix that is unusable (not positive definite, unlabelled)."""

    def __init__(self, message: str, labels=None):
        super().__init__(message)
        self.labels = list(labels) if labels is not None else []


class StartingValueError(MvremlError, ValueError):
    """Starting values (``init=``) that are not positive definite or have the wrong traits."""

    def __init__(self, message: str, term: str | None = None):
        super().__init__(message)
        self.term = term


class ModelError(MvremlError, ValueError):
    """A model that cannot be fitted as specified (e.g. nothing left to estimate)."""


class ComparisonError(MvremlError, ValueError):
    """Models that cannot be compared (likelihood-ratio test of non-nested fits)."""


class CheckpointError(MvremlError, ValueError):
    """A checkpoint file that cannot be read, or that belongs to another model or data."""


class ExpressionError(MvremlError, ValueError):
    """A ``vpredict`` expression that cannot be evaluated (unknown component, syntax)."""


class TermError(MvremlError, KeyError):
    """A term name that the fitted model does not have (``res.covariance("Famly")``).

    Attributes
    ----------
    term : str
        The name asked for.
    known : list of str
        The terms the model has.
    """

    def __init__(self, term: str, known, what: str = "term"):
        self.term = term
        self.known = list(known)
        self.message = f"no {what} {term!r} in this model; known: {', '.join(map(str, self.known)) or '(none)'}"
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError would quote the message; show it as written
        return self.message

    def __reduce__(self):
        return (type(self), (self.term, self.known), {"message": self.message})


class FactorizationError(MvremlError, ArithmeticError):
    """The mixed-model equations could not be factorized at some parameter value."""


class NotPositiveDefiniteError(FactorizationError):
    """A Cholesky factorization met a non-positive pivot; ``column`` is the equation (original
    order of the matrix, not the factor's permuted order) at which it stopped."""

    def __init__(self, message: str, column: int | None = None):
        super().__init__(message)
        self.column = column

    def __reduce__(self):
        return (type(self), (str(self), self.column))


class ResourceError(MvremlError, MemoryError):
    """A fit whose forecast (:func:`mvreml.plan`) needs more memory than is available.

    Raised before the first numeric factorization instead of being killed by the kernel
    minutes later; ``fit(..., check_memory=False)`` fits anyway.

    Attributes
    ----------
    needed : int or None
        Bytes the iterates would add to the process.
    available : int or None
        Bytes available (MemAvailable of /proc/meminfo, the cgroup's room under its limit).
    plan : mvreml.Plan or None
        The whole forecast.
    """

    def __init__(self, message: str, needed: int | None = None, available: int | None = None, plan=None):
        super().__init__(message)
        self.needed = needed
        self.available = available
        self.plan = plan


class MvremlWarning(UserWarning):
    """Base class of mvreml's warnings."""


class ConvergenceWarning(MvremlWarning):
    """The fit stopped before its convergence criteria were met."""


class BoundaryWarning(MvremlWarning):
    """A variance component reached its boundary (zero, or a singular matrix)."""


class IdentifiabilityWarning(MvremlWarning):
    """The data do not inform some combination of parameters (singular AI matrix)."""


class DataWarning(MvremlWarning):
    """Records or levels were dropped, or input was changed to make sense of it."""


class PedigreeWarning(MvremlWarning):
    """A pedigree oddity that was repaired (parents added as founders, sex conflicts allowed)."""


class ArgumentError(MvremlError, ValueError):
    """A fit argument of the wrong type or out of range (``maxiter="10"``, ``tol=0``).

    Attributes
    ----------
    argument : str or None
        The name of the argument at fault.
    """

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


def warn(message: str, category: type = MvremlWarning) -> None:
    """Issue a warning attributed to the user's line: the first caller outside mvreml.

    A fixed ``stacklevel`` points at mvreml's own lines as soon as the call chain changes
    (``fit`` -> ``_fit_parsed`` -> ``build_design``, or ``init="pairwise"`` one level
    deeper); walking the stack finds the frame that called into mvreml, wherever it is.

    Parameters
    ----------
    message : str
    category : Warning subclass
        Usually one of the MvremlWarning classes above.
    """
    import sys
    import warnings

    level, frame = 2, sys._getframe(1)   # stacklevel 2 is the frame that called warn()
    while frame is not None and _inside_mvreml(frame.f_globals.get("__name__", "")):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def _inside_mvreml(module: str) -> bool:
    return module == "mvreml" or module.startswith("mvreml.")
