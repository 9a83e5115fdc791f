#!/usr/bin/env python3
"""A CRI client on Python's grpcio (a non-Swift gRPC stack), for interop tests and
for poking a running crisp by hand:

    python3 Tests/Interop/cri_client.py --socket /run/crisp/crisp.sock version
    python3 Tests/Interop/cri_client.py --socket /run/crisp/crisp.sock status --verbose

Stubs are generated from Shared/CRIAPI/api.proto into a temporary directory on
each run (grpcio-tools, from PyPI). Prints the response as JSON; on an RPC error
prints {"code": ..., "details": ...} and exits 3.
"""
import argparse
import importlib
import json
import os
import sys
import tempfile

from grpc_tools import protoc
import grpc
from google.protobuf import json_format

PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Shared", "CRIAPI")


def load_stubs(out_dir):
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}", os.path.join(PROTO_DIR, "api.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument(
        "call", choices=["version", "status", "list-containers", "list-container-stats", "checkpoint-container"])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out_dir:
        pb, pb_grpc = load_stubs(out_dir)
        with grpc.insecure_channel(f"unix://{args.socket}") as channel:
            runtime = pb_grpc.RuntimeServiceStub(channel)
            try:
                if args.call == "version":
                    reply = runtime.Version(pb.VersionRequest(version="v1"), timeout=args.timeout)
                elif args.call == "status":
                    reply = runtime.Status(pb.StatusRequest(verbose=args.verbose), timeout=args.timeout)
                elif args.call == "list-containers":
                    reply = runtime.ListContainers(pb.ListContainersRequest(), timeout=args.timeout)
                elif args.call == "list-container-stats":
                    reply = runtime.ListContainerStats(pb.ListContainerStatsRequest(), timeout=args.timeout)
                else:
                    reply = runtime.CheckpointContainer(pb.CheckpointContainerRequest(), timeout=args.timeout)
            except grpc.RpcError as error:
                print(json.dumps({"code": error.code().name, "details": error.details()}))
                return 3
        print(json_format.MessageToJson(reply, preserving_proto_field_name=True, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
