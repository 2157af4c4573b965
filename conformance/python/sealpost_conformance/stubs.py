"""Generates Python stubs from proto/ with Debian's protoc and grpc_python_plugin, then
imports them. Generated code is never committed: it is made at run time into a cache
directory, so it can never drift from proto/ (the same guarantee CI's `buf generate` check
gives gen/ts)."""
import glob
import importlib
import os
import shutil
import subprocess
import sys


HEALTH_DIR = "sealpost_vendored_grpc_health/v1"


class StubsUnavailable(Exception):
    pass


def proto_files(proto_dir):
    files = []
    for pattern in ("sealpost/directory/v1/*.proto", "sealpost/delivery/v1/*.proto"):
        files += sorted(os.path.relpath(f, proto_dir) for f in glob.glob(os.path.join(proto_dir, pattern)))
    return files


def generate(proto_dir, out_dir, protoc="protoc", plugin=None):
    """Runs protoc --python_out --grpc_python_out over the service protos and their imports."""
    plugin = plugin or shutil.which("grpc_python_plugin")
    if not shutil.which(protoc):
        raise StubsUnavailable("protoc not found: apt-get install protobuf-compiler")
    if not plugin:
        raise StubsUnavailable("grpc_python_plugin not found: apt-get install protobuf-compiler-grpc")
    os.makedirs(out_dir, exist_ok=True)
    # grpc/health/v1/health_pb2.py would shadow grpcio's own `grpc` package, so the health
    # proto is compiled from a copy under another directory: the module path changes, the
    # proto package (and so the RPC path /grpc.health.v1.Health/...) does not.
    vendor = os.path.join(out_dir, "_protos")
    os.makedirs(os.path.join(vendor, HEALTH_DIR), exist_ok=True)
    shutil.copy(os.path.join(proto_dir, "grpc/health/v1/health.proto"), os.path.join(vendor, HEALTH_DIR, "health.proto"))
    plugin_args = ["--python_out", out_dir, "--grpc_python_out", out_dir, "--plugin=protoc-gen-grpc_python=" + plugin]
    sealpost = [f for f in proto_files(proto_dir) if not f.startswith("grpc/")]
    for cmd in ([protoc, "-I", proto_dir] + plugin_args + sealpost, [protoc, "-I", vendor] + plugin_args + [HEALTH_DIR + "/health.proto"]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise StubsUnavailable("protoc failed: " + res.stderr.strip())
    return out_dir


def load(out_dir):
    """Imports every generated module; returns {proto file name: (pb2 module, pb2_grpc module or None)}."""
    try:
        import grpc  # noqa: F401
        import google.protobuf  # noqa: F401
    except ImportError as e:
        raise StubsUnavailable("python3-grpcio / python3-protobuf missing: %s" % e)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    modules = {}
    for path in glob.glob(os.path.join(out_dir, "**", "*_pb2.py"), recursive=True):
        if os.path.relpath(path, out_dir).startswith("_protos"):
            continue
        rel = os.path.relpath(path, out_dir)[: -len("_pb2.py")]
        name = rel.replace(os.sep, ".")
        pb2 = importlib.import_module(name + "_pb2")
        grpc_mod = None
        if os.path.exists(os.path.join(out_dir, rel + "_pb2_grpc.py")):
            grpc_mod = importlib.import_module(name + "_pb2_grpc")
        modules[rel + ".proto"] = (pb2, grpc_mod)
    return modules
