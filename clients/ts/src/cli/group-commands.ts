/**
 * `group ...` subcommands of the sealpost CLI, over a MessengerGroups (groups/). Pure
 * argument handling and printing: the CLI entry opens the Messenger and its group stores and
 * passes them in. A group is named by its hex id or any unique prefix of it.
 *
 *   group create <title> <account>... [--admin <account>]... [--admins-only on|off]
 *   group add <group> <account>...        group remove <group> <account>
 *   group promote <group> <account>       group demote <group> <account>
 *   group settings <group> [--title <t>] [--admins-only on|off]
 *   group leave <group>                   group send <group> <text>...
 *   group send-file <group> <path> [--type <mime>] [--caption <text>]
 *   group list                            group info <group>
 *   group history <group> [--limit <n>]   group read <group>
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import type { StoredMessage } from "../store/conversation-store.js";
import type { GroupEvent } from "../groups/group-events.js";
import { GroupError } from "../groups/group-errors.js";
import type { GroupInfo } from "../groups/group-manager.js";
import type { MessengerGroups } from "../groups/messenger-groups.js";

export const GROUP_USAGE = `group commands:
  group create <title> <account>... [--admin <account>]... [--admins-only on|off]
  group add <group> <account>...
  group remove <group> <account>
  group promote <group> <account>
  group demote <group> <account>
  group settings <group> [--title <title>] [--admins-only on|off]
  group leave <group>
  group send <group> <text>...
  group send-file <group> <path> [--type <mime>] [--caption <text>]
  group list
  group info <group>
  group history <group> [--limit <n>]
  group read <group>
<group> is a group id (hex) or a unique prefix of one.`;

export interface GroupCommandContext {
  groups: MessengerGroups;
  out: (line: string) => void;
  /** Bounds the wait for the outbox (false once the time is up); default: wait as long as it takes. */
  flushWithin?: (flushed: Promise<void>) => Promise<boolean>;
}

/** A usage error: the CLI prints it with GROUP_USAGE and exits 2. */
export class GroupUsageError extends Error {
  override name = "GroupUsageError";
}

/** Options of the group subcommands (node:util parseArgs names). */
export interface GroupCommandOptions {
  admin?: string[];
  "admins-only"?: string;
  title?: string;
  limit?: string;
  type?: string;
  caption?: string;
}

/** parseArgs option specs, for a CLI that parses its whole command line at once. */
export const GROUP_OPTION_SPECS = {
  admin: { type: "string", multiple: true },
  "admins-only": { type: "string" },
  title: { type: "string" },
  limit: { type: "string" },
  type: { type: "string" },
  caption: { type: "string" },
} as const;

/** Splits raw `group ...` arguments into positionals and options. */
export function parseGroupArgv(argv: string[]): { args: string[]; opts: GroupCommandOptions } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: GROUP_OPTION_SPECS, allowPositionals: true });
    return { args: positionals, opts: values };
  } catch (e) {
    throw new GroupUsageError(e instanceof Error ? e.message : String(e));
  }
}

function onOff(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (v !== "on" && v !== "off") throw new GroupUsageError("--admins-only takes on or off");
  return v === "on";
}

function need(args: string[], n: number, what: string): void {
  if (args.length < n) throw new GroupUsageError(`missing ${what}`);
}

async function resolveGroup(groups: MessengerGroups, ref: string): Promise<GroupInfo> {
  const all = await groups.list();
  const hits = all.filter((g) => g.groupId.startsWith(ref.toLowerCase()));
  if (hits.length === 1) return hits[0];
  throw new GroupUsageError(hits.length === 0 ? `no group ${ref}` : `${ref} is ambiguous (${hits.length} groups)`);
}

export function formatGroup(g: GroupInfo): string {
  const members = g.members.map((m) => (m.admin ? `${m.accountId}*` : m.accountId)).join(", ");
  return `${g.groupId}  "${g.title}"  v${g.version}  ${g.active ? "" : "(left) "}${g.adminsOnlyMessages ? "(admins only) " : ""}members: ${members}`;
}

function formatMessage(m: StoredMessage): string {
  const body = m.body.kind === "text" ? m.body.text : `[${m.body.attachment.contentType}, ${m.body.attachment.size} bytes]`;
  const from = m.outgoing ? "me" : `${m.sender.accountId}/${m.sender.deviceId}`;
  return `${new Date(m.sentAtMs).toISOString()}  ${from}: ${body}${m.outgoing ? `  (${m.status})` : ""}`;
}

/**
 * Says what happened to a group message: sent (exit 0), failed with the reason (1), or still
 * queued when the wait is over (75: it goes out the next time the device is online).
 */
async function reportSent(ctx: GroupCommandContext, g: GroupInfo, m: StoredMessage, detail: string): Promise<number> {
  const wait = ctx.flushWithin ?? (async (p: Promise<void>) => (await p, true));
  if (m.status === "queued" && !(await wait(ctx.groups.flush()))) {
    ctx.out(`queued ${m.id} to ${g.groupId}; not sent yet (server unreachable?). It goes out the next time sealpost runs online here.`);
    return 75;
  }
  const now = (await ctx.groups.history(g.groupId)).find((x) => x.id === m.id) ?? m;
  if (now.status === "failed") {
    ctx.out(`error: ${m.id} to ${g.groupId} failed${now.failure ? `: ${now.failure}` : ""}`);
    return 1;
  }
  ctx.out(`sent ${m.id}${detail} to ${g.groupId}`);
  return 0;
}

/**
 * Runs one `group` subcommand (argv after "group"; options parsed here unless `opts` is given
 * by a CLI that parsed them already). Returns the exit code: 0 done, 1 the group layer refused
 * (not an admin, not a member...), 2 usage error.
 */
export async function runGroupCommand(argv: string[], ctx: GroupCommandContext, opts?: GroupCommandOptions): Promise<number> {
  const { groups, out } = ctx;
  try {
    let args = [...argv];
    if (!opts) ({ args, opts } = parseGroupArgv(argv));
    const sub = args.shift();
    switch (sub) {
      case "create": {
        need(args, 1, "title");
        const [title, ...members] = args;
        out(formatGroup(await groups.createGroup(title, members, { admins: opts.admin ?? [], adminsOnlyMessages: onOff(opts["admins-only"]) })));
        return 0;
      }
      case "add": {
        need(args, 2, "group and account");
        const g = await resolveGroup(groups, args[0]);
        out(formatGroup(await groups.addMembers(g.groupId, args.slice(1))));
        return 0;
      }
      case "remove":
      case "promote":
      case "demote": {
        need(args, 2, "group and account");
        const g = await resolveGroup(groups, args[0]);
        const info =
          sub === "remove"
            ? await groups.removeMember(g.groupId, args[1])
            : sub === "promote"
              ? await groups.promote(g.groupId, args[1])
              : await groups.demote(g.groupId, args[1]);
        out(formatGroup(info));
        return 0;
      }
      case "settings": {
        need(args, 1, "group");
        const adminsOnlyMessages = onOff(opts["admins-only"]);
        if (opts.title === undefined && adminsOnlyMessages === undefined) throw new GroupUsageError("nothing to change (--title, --admins-only)");
        const g = await resolveGroup(groups, args[0]);
        out(formatGroup(await groups.changeSettings(g.groupId, { title: opts.title, adminsOnlyMessages })));
        return 0;
      }
      case "leave": {
        need(args, 1, "group");
        const g = await resolveGroup(groups, args[0]);
        await groups.leave(g.groupId);
        out(`left ${g.groupId}`);
        return 0;
      }
      case "send": {
        need(args, 2, "group and text");
        const g = await resolveGroup(groups, args[0]);
        const m = await groups.sendText(g.groupId, args.slice(1).join(" "));
        return reportSent(ctx, g, m, "");
      }
      case "send-file": {
        need(args, 2, "group and path");
        const g = await resolveGroup(groups, args[0]);
        const data = new Uint8Array(await readFile(args[1]));
        const m = await groups.sendFile(g.groupId, data, {
          contentType: opts.type ?? "application/octet-stream",
          fileName: basename(args[1]),
          caption: opts.caption,
        });
        return reportSent(ctx, g, m, ` (${data.length} bytes, encrypted and uploaded)`);
      }
      case "list": {
        const all = await groups.list();
        if (all.length === 0) out("no groups");
        for (const g of all) out(formatGroup(g));
        return 0;
      }
      case "info": {
        need(args, 1, "group");
        out(formatGroup(await resolveGroup(groups, args[0])));
        return 0;
      }
      case "history": {
        need(args, 1, "group");
        const g = await resolveGroup(groups, args[0]);
        for (const m of await groups.history(g.groupId, { limit: opts.limit ? Number(opts.limit) : undefined })) out(formatMessage(m));
        return 0;
      }
      case "read": {
        need(args, 1, "group");
        const g = await resolveGroup(groups, args[0]);
        out(`marked ${await groups.markRead(g.groupId)} message(s) read`);
        return 0;
      }
      default:
        throw new GroupUsageError(sub ? `unknown group command ${sub}` : "missing group command");
    }
  } catch (e) {
    if (e instanceof GroupUsageError) {
      out(`error: ${e.message}`);
      out(GROUP_USAGE);
      return 2;
    }
    if (e instanceof GroupError) {
      out(`error (${e.code}): ${e.message}`);
      return 1;
    }
    throw e;
  }
}

/** One line for a group event (sealpost listen), or undefined for none. */
export function describeGroupEvent(e: GroupEvent): string {
  const g = e.groupId ? e.groupId.slice(0, 8) : "?";
  switch (e.type) {
    case "group-updated": {
      const d = e.diff;
      const parts = [
        d.added.length ? `added ${d.added.join(", ")}` : "",
        d.removed.length ? `removed ${d.removed.join(", ")}` : "",
        d.promoted.length ? `promoted ${d.promoted.join(", ")}` : "",
        d.demoted.length ? `demoted ${d.demoted.join(", ")}` : "",
        d.titleChanged ? "title changed" : "",
        d.settingsChanged ? "settings changed" : "",
      ].filter(Boolean);
      return `group ${g} ${e.joined ? "joined" : "updated"} (v${e.version} by ${e.signer.accountId}/${e.signer.deviceId})${parts.length ? ": " + parts.join("; ") : ""}`;
    }
    case "group-left":
      return `group ${g}: you are no longer a member${e.removedBy ? ` (removed by ${e.removedBy.accountId})` : ""}`;
    case "group-member-left":
      return `group ${g}: ${e.accountId} left`;
    case "group-rejected":
      return `WARNING: group ${g}: rejected ${e.what} from ${e.from.accountId}/${e.from.deviceId} (${e.problem})`;
  }
}
