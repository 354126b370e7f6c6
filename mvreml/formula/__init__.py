"""asreml-R 4 style model strings -> term specifications (pure parsing: no numbers, no data).

A small tokenizer and a splitter that respects parentheses and quotes turn the strings given
to ``mvreml.fit`` into frozen dataclasses; ``design.py`` turns those into matrices. Labels are
canonical (trait part first, ``sex:trait`` -> ``trait:sex``; spacing normalised; no ``init=``;
the residual is written ``units:us(trait)``), so that a term always gets the same label.

The parser is a small package: ``specs`` (the dataclasses), ``_parse`` (tokens, factors, terms),
``fixed`` (the fixed formula), ``variance`` (random and residual formulas).
"""
from ._parse import STRUCTURES, _factor, _split, _text, _Tok, _unquote  # noqa: F401  (used by _bars)
from .fixed import parse_fixed
from .specs import At, Dim, FixedSpec, FixedTerm, RandomTerm, Response, VarianceSpec
from .variance import _level, columns_used, parse_random, parse_residual  # noqa: F401

__all__ = ["Response", "FixedTerm", "FixedSpec", "RandomTerm", "VarianceSpec", "STRUCTURES", "Dim", "At",
           "parse_fixed", "parse_random", "parse_residual", "columns_used"]
