"""The central station's domain: the beds a nurse watches, the alarms she handles, and the HL7
messages they leave as. Pure: the station service (`station/`) feeds it and serves it."""

__all__ = ["alarm_board", "beds", "pcd04"]
