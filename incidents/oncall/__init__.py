"""Users, on-call schedules, and who is on call.

- `documents`: the users and schedules documents (the config file's `users:` and
  `schedules:` sections and the API's bodies) and their validation.
- `rotation` and `timeline`: the schedule math, pure functions of a schedule and a time.
- `store`: the documents in the `config_documents` table, and applying the config file.
- `lookup`: the Python API the escalation engine asks (who is on call, who is this phone).
- `ics`: the iCalendar feed of a schedule.

Importing this package imports nothing else: the settings import `documents`.
"""
