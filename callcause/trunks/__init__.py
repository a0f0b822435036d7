"""Trunk health: ASR, NER, SEER, ACD, PDD and the category mix per source x trunk x direction.

The records say why one call ended; this package looks across them. It is pure and streaming:
`Leg` is the little a figure needs from a record (or its JSON document), `Totals` counts legs
and derives the figures (the daemon and `callcause report` alike), and `RollingStats` keeps
them over rolling windows in bounded memory for the daemon.
"""

from callcause.trunks.classes import NER_CLASSES, ClassTable, load_classes
from callcause.trunks.legs import OTHER, GroupKey, Leg, leg_from_document, leg_from_record
from callcause.trunks.rolling import DEFAULT_WINDOWS, RollingStats
from callcause.trunks.totals import Figures, Totals

__all__ = [
    "DEFAULT_WINDOWS", "NER_CLASSES", "OTHER", "ClassTable", "Figures", "GroupKey", "Leg", "RollingStats",
    "Totals", "leg_from_document", "leg_from_record", "load_classes",
]
