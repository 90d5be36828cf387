"""era-beacon-notify: the cron one-shot behind notify_once.py. See README.md."""
