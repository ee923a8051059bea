"""Deployment: the stack (stack.sh, Procfile), its S3 server, the harness the drills and the load bench use."""
