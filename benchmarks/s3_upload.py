"""The S3 baseline: write one file's bytes, already in memory, to S3 with s3fs.

Usage: python -m benchmarks.s3_upload ENDPOINT s3://bucket/key ORDER_ID FILE_ID SIZE

The bytes are the simulator's content of that file, written in 1 MiB pieces through
`s3fs.S3FileSystem.open(..., "wb")`, as the pipeline writes them; prints {"upload_s": ...}.
"""

from __future__ import annotations

import json
import sys
import time

import s3fs

from regards_order.simulator.content import content_bytes

PIECE = 1024 * 1024


def main(argv: list[str]) -> int:
    """Upload and print the time the upload alone took."""
    endpoint, url, order_id, file_id, size = argv
    data = memoryview(content_bytes(int(order_id), int(file_id), int(size)))
    fs = s3fs.S3FileSystem(endpoint_url=endpoint)
    began = time.perf_counter()
    with fs.open(url, "wb") as sink:
        for start in range(0, len(data), PIECE):
            sink.write(data[start : start + PIECE])
    elapsed = time.perf_counter() - began
    if fs.info(url)["size"] != len(data):
        print(f"uploaded object has the wrong size: {fs.info(url)['size']}", file=sys.stderr)
        return 1
    print(json.dumps({"upload_s": elapsed}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
