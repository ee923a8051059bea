"""A queued photo is analysed: the job queue (thread, worker or Celery), the pipeline run, the model."""
