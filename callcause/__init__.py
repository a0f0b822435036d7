"""callcause: why did the call end? Hangup-cause records from Asterisk and FreeSWITCH."""

from callcause.record import CauseRecord, Explanation, HangupClues, ReasonHeader, Texts

__version__ = "0.1.0"
__all__ = ["CauseRecord", "Explanation", "HangupClues", "ReasonHeader", "Texts", "__version__"]
