"""The FreeSWITCH source: the repaired greenswitch ESL client and the source that turns events into clues."""
