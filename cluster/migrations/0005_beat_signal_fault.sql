-- A beat cut while its device had a sensor fault that makes the ECG unanalysable (lead off,
-- clipping, noise) carries the fault; NULL = analysable. Arrhythmia alarms are inhibited there.

ALTER TABLE beats ADD COLUMN signal_fault text;
ALTER TABLE beats_shadow ADD COLUMN signal_fault text;
ALTER TABLE beats_staging ADD COLUMN signal_fault text;
