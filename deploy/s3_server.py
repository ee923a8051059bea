"""The stack's S3-compatible store on loopback: moto's server, with the bucket created, until SIGTERM or Ctrl-C.

``python deploy/s3_server.py --port 5005 --bucket scarwatch``. moto keeps objects in memory: they last as long
as this process. Point ``S3_ENDPOINT_URL`` at a real store (MinIO, Ceph, AWS) to keep them.
"""
from __future__ import annotations

import argparse
import os
import signal
import threading

import boto3
from moto.server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5005)
    parser.add_argument("--bucket", default=os.environ.get("S3_BUCKET", "scarwatch"))
    args = parser.parse_args()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    endpoint = f"http://{args.host}:{args.port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
                 aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
                 ).create_bucket(Bucket=args.bucket)
    print(f"S3 (moto, in memory) at {endpoint}, bucket {args.bucket!r}", flush=True)
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
