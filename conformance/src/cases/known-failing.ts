/**
 * The known-failing list: lets a partial implementation adopt the suite. One glob per line,
 * matched against case names; `#` starts a comment. A line may end with `@ <target-glob>` to
 * apply only to some targets (e.g. `delivery/receive/** @ grpc-web*`). `*` matches within
 * one path segment, `**` across segments.
 *
 * A known-failing case that passes is reported as an error, so the list never goes stale.
 */
import { readFileSync } from "node:fs";

export interface KnownFailingRule {
  pattern: string;
  target?: string;
  line: number;
}

export class KnownFailing {
  constructor(readonly rules: KnownFailingRule[]) {}

  static parse(text: string): KnownFailing {
    const rules: KnownFailingRule[] = [];
    text.split("\n").forEach((raw, i) => {
      const line = raw.replace(/#.*$/, "").trim();
      if (!line) return;
      const [pattern, target] = line.split(/\s+@\s+/);
      rules.push({ pattern: pattern.trim(), target: target?.trim(), line: i + 1 });
    });
    return new KnownFailing(rules);
  }

  static load(path: string | undefined): KnownFailing {
    return path ? KnownFailing.parse(readFileSync(path, "utf8")) : new KnownFailing([]);
  }

  matches(caseName: string, target: string): boolean {
    return this.rules.some((r) => globMatch(r.pattern, caseName) && (!r.target || globMatch(r.target, target)));
  }
}

/** Glob to RegExp: `**` any characters, `*` any except "/", `?` one character. */
export function globMatch(glob: string, text: string): boolean {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`).test(text);
}
