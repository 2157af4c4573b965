"""Summary table and JUnit XML, the same shapes as the TypeScript runner's reports."""
from xml.sax.saxutils import quoteattr, escape


def is_ok(results):
    return all(r["status"] in ("pass", "known-fail") for r in results)


def summary(results):
    lines = []
    cell = {"pass": "pass", "fail": "FAIL", "known-fail": "known-fail", "unexpected-pass": "XPASS"}
    width = max([4] + [len(r["name"]) for r in results])
    for r in results:
        lines.append("%s | %s" % (r["name"].ljust(width), cell[r["status"]]))
    count = lambda s: sum(1 for r in results if r["status"] == s)
    target = results[0]["target"] if results else "-"
    lines.append("")
    lines.append("%s: %d passed, %d failed, %d known failing, %d unexpectedly passed" % (target, count("pass"), count("fail"), count("known-fail"), count("unexpected-pass")))
    bad = [r for r in results if r["status"] in ("fail", "unexpected-pass")]
    if bad:
        lines.append("")
        lines.append("Failures:")
        for r in bad:
            lines.append("  %s %s%s: %s" % (r["target"], r["name"], " (step %d)" % r["step"] if r.get("step") else "", r.get("message", "")))
    return "\n".join(lines)


def junit(results, suite="sealpost-conformance"):
    fails = sum(1 for r in results if r["status"] in ("fail", "unexpected-pass"))
    skipped = sum(1 for r in results if r["status"] == "known-fail")
    t = sum(r["durationMs"] for r in results) / 1000.0
    target = results[0]["target"] if results else "python"
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<testsuites name=%s tests="%d" failures="%d" skipped="%d" time="%.3f">' % (quoteattr(suite), len(results), fails, skipped, t),
           '  <testsuite name=%s tests="%d" failures="%d" errors="0" skipped="%d" time="%.3f">' % (quoteattr(target), len(results), fails, skipped, t)]
    for r in results:
        head = '    <testcase classname=%s name=%s time="%.3f"' % (quoteattr(r["target"]), quoteattr(r["name"]), r["durationMs"] / 1000.0)
        if r["status"] == "pass":
            out.append(head + "/>")
        elif r["status"] == "known-fail":
            out += [head + ">", "      <skipped message=%s/>" % quoteattr("known failing: " + r.get("message", "")), "    </testcase>"]
        else:
            out += [head + ">", "      <failure message=%s type=%s>%s</failure>" % (quoteattr(r.get("message", "")[:500]), quoteattr(r["status"]), escape(r.get("checks", "") + "\n" + r.get("message", ""))), "    </testcase>"]
    out += ["  </testsuite>", "</testsuites>", ""]
    return "\n".join(out)
