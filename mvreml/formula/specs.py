"""The frozen specifications a parsed formula becomes: response, fixed terms, random terms
(with their structured dimensions and at() restrictions), the residual."""
from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class Response:
    """Response columns; ``multivariate`` when ``cbind()`` names two or more."""
    traits: tuple[str, ...]
    multivariate: bool


@dataclass(frozen=True)
class FixedTerm:
    """A fixed term: formulaic ``rhs`` fitted once (``traits`` None) or per listed trait."""
    label: str
    rhs: str
    traits: tuple[str, ...] | None
    columns: tuple[str, ...] = ()    # data columns named in ``rhs``


@dataclass(frozen=True)
class FixedSpec:
    """The parsed fixed formula."""
    response: Response
    intercept: bool
    terms: tuple[FixedTerm, ...]


@dataclass(frozen=True)
class Dim:
    """A structured dimension of a random term: on the levels of a data column (``us(site)``,
    ``fa(site, 2)``), or on the coefficients of a covariate basis (``us(pol(Days, 1))``,
    ``diag(leg(dim, 2))``, lme4's ``(1 + Days | Subject)``).

    ``column`` identifies the dimension (the data column, or ``pol(Days, 1)`` / ``coef`` for a
    basis); ``basis`` is None for a factor, ``("pol", k, column)``, ``("leg", k, column)`` or
    ``("raw", intercept, columns)``.
    """
    column: str
    structure: str
    k: int | None
    init: tuple[float, ...] | None
    label: str
    basis: tuple | None = None

    @property
    def data_columns(self) -> tuple[str, ...]:
        if self.basis is None:
            return (self.column,)
        return tuple(self.basis[2]) if self.basis[0] == "raw" else (self.basis[2],)


@dataclass(frozen=True)
class At:
    """``at(column, levels)``: the term covers only records at those levels, one term per level.

    ``levels`` is None for every level (asreml's ``at(site)``), else (text, by_position) pairs:
    ``at(site, 3)`` names the third level, ``at(site, "S3")`` the level S3.
    """
    column: str
    levels: tuple[tuple[str, bool], ...] | None


@dataclass(frozen=True)
class RandomTerm:
    """A random term (or the residual, ``name == "units"``).

    ``structure`` / ``fa_k`` / ``traits`` describe the trait dimension (``idv`` or ``id`` when the
    term has none); ``dims`` the structured dimensions on other factors, ``order`` the order of
    the direct product (``"trait"`` included when the term gives trait a structure), ``at`` the
    level restrictions, ``ide`` an identity twin of a ``vm()`` term, ``sections`` the column of a
    residual ``dsum(~ ... | column)``.
    """
    name: str
    factors: tuple[str, ...]
    structure: str
    fa_k: int | None
    traits: tuple[str, ...] | None
    relmat: str | None
    label: str
    init: tuple[float, ...] | None
    dims: tuple[Dim, ...] = ()
    order: tuple[str, ...] = ()
    at: tuple[At, ...] = ()
    ide: bool = False
    sections: str | None = None
    as_factor: tuple[str, ...] = ()
    # dsum(~ A + B | site, levels = list(1:2, 3)): per structure, the sections it covers as
    # (text, by_position) pairs and its lattice dimensions; None: ``dims`` for every section
    section_dims: tuple | None = None


@dataclass(frozen=True)
class VarianceSpec:
    """The parsed random formula."""
    terms: tuple[RandomTerm, ...]

