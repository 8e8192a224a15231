"""Rhythm analysis beyond single beats: what the signal itself says between beats (silence,
fibrillation), the reference episodes of annotated records, and how alarms are scored."""
