"""era-beacon-notify: the cron one-shot behind notify_once.py. Start reading at cli.py; see README.md."""
