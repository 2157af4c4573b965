#!/usr/bin/python3
"""sealpost conformance, Python client: runs the server cases (conformance/cases/*.yaml)
against a server over gRPC with grpcio and stubs generated from proto/ by Debian's protoc and
grpc_python_plugin. A second language's client stack for the same cases.

  /usr/bin/python3 conformance/python/run_cases.py --url http://127.0.0.1:8080

Needs (Debian): python3-grpcio python3-protobuf python3-yaml protobuf-compiler
protobuf-compiler-grpc. Exit status: 0 all passed or known-failing, 1 failures, 2 usage,
3 prerequisites missing.
"""
import argparse
import glob
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sealpost_conformance import stubs  # noqa: E402


def load_cases(cases_dir):
    import yaml

    cases = []
    for path in sorted(glob.glob(os.path.join(cases_dir, "*.yaml")) + glob.glob(os.path.join(cases_dir, "*.yml"))):
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for c in doc.get("cases", []):
            c["file"] = os.path.relpath(path)
            cases.append(c)
    return cases


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--cases", default=os.path.join(HERE, "..", "cases"), help="case directory")
    ap.add_argument("--proto", default=os.path.join(HERE, "..", "..", "proto"), help="proto root")
    ap.add_argument("--stubs-dir", help="where to generate the Python stubs (default: a temporary directory)")
    ap.add_argument("--known-failing", help="known-failing globs file")
    ap.add_argument("--filter", action="append", help="only cases whose name matches this glob (repeatable)")
    ap.add_argument("--junit", help="write JUnit XML here")
    ap.add_argument("--json", help="write the results as JSON here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    try:
        import yaml  # noqa: F401
    except ImportError:
        print("sealpost-conformance (python): PyYAML missing: apt-get install python3-yaml", file=sys.stderr)
        return 3
    try:
        out = args.stubs_dir or tempfile.mkdtemp(prefix="sealpost-py-stubs-")
        stubs.generate(os.path.abspath(args.proto), out)
        modules = stubs.load(out)
    except stubs.StubsUnavailable as e:
        print("sealpost-conformance (python): %s" % e, file=sys.stderr)
        return 3

    from sealpost_conformance.runner import glob_match, load_known_failing, run_cases
    from sealpost_conformance.report import is_ok, junit, summary
    from sealpost_conformance.stack import GrpcioStack

    DeviceList = modules["sealpost/directory/v1/device_list.proto"][0].DeviceList
    cases = load_cases(args.cases)
    if args.filter:
        cases = [c for c in cases if any(glob_match(g, c["name"]) for g in args.filter)]
    stack = GrpcioStack(args.url, modules)

    def progress(r):
        if not args.quiet:
            extra = ": " + r.get("message", "") if r["status"] == "fail" else ""
            print("%-15s %s %s%s" % (r["status"], r["target"], r["name"], extra), flush=True)

    try:
        results = run_cases(stack, cases, DeviceList, load_known_failing(args.known_failing), progress)
    finally:
        stack.close()
    print("\n" + summary(results))
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(junit(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0 if is_ok(results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
