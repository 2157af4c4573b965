/**
 * `group ...` subcommands of the sealpost CLI, over a MessengerGroups (groups/). Pure
 * argument handling and printing: the CLI entry opens the Messenger and its group stores and
 * passes them in. A group is named by its hex id or any unique prefix of it.
 *
 *   group create <title> <account>... [--admin <account>]... [--admins-only]
 *   group add <group> <account>...        group remove <group> <account>
 *   group promote <group> <account>       group demote <group> <account>
 *   group settings <group> [--title <t>] [--admins-only on|off]
 *   group leave <group>                   group send <group> <text>...
 *   group list                            group info <group>
 *   group history <group> [--limit <n>]   group read <group>
 */
import type { StoredMessage } from "../conversation-store.js";
import { GroupError } from "../groups/group-errors.js";
import type { GroupInfo } from "../groups/group-manager.js";
import type { MessengerGroups } from "../groups/messenger-groups.js";

export const GROUP_USAGE = `group commands:
  group create <title> <account>... [--admin <account>]... [--admins-only]
  group add <group> <account>...
  group remove <group> <account>
  group promote <group> <account>
  group demote <group> <account>
  group settings <group> [--title <title>] [--admins-only on|off]
  group leave <group>
  group send <group> <text>...
  group list
  group info <group>
  group history <group> [--limit <n>]
  group read <group>
<group> is a group id (hex) or a unique prefix of one.`;

export interface GroupCommandContext {
  groups: MessengerGroups;
  out: (line: string) => void;
}

/** A usage error: the CLI prints it with GROUP_USAGE and exits 2. */
export class GroupUsageError extends Error {
  override name = "GroupUsageError";
}

function takeFlag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (value === undefined || value.startsWith("--")) throw new GroupUsageError(`${name} needs a value`);
  args.splice(i, 2);
  return value;
}

function takeSwitch(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i < 0) return false;
  args.splice(i, 1);
  return true;
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
 * Runs one `group` subcommand (argv after "group"). Returns the exit code: 0 done, 1 the
 * group layer refused (not an admin, not a member...), 2 usage error.
 */
export async function runGroupCommand(argv: string[], ctx: GroupCommandContext): Promise<number> {
  const { groups, out } = ctx;
  const args = [...argv];
  const sub = args.shift();
  try {
    switch (sub) {
      case "create": {
        const admins: string[] = [];
        for (let a = takeFlag(args, "--admin"); a !== undefined; a = takeFlag(args, "--admin")) admins.push(a);
        const adminsOnlyMessages = takeSwitch(args, "--admins-only");
        need(args, 1, "title");
        const [title, ...members] = args;
        out(formatGroup(await groups.createGroup(title, members, { admins, adminsOnlyMessages })));
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
        const info = sub === "remove" ? await groups.removeMember(g.groupId, args[1]) : sub === "promote" ? await groups.promote(g.groupId, args[1]) : await groups.demote(g.groupId, args[1]);
        out(formatGroup(info));
        return 0;
      }
      case "settings": {
        const title = takeFlag(args, "--title");
        const only = takeFlag(args, "--admins-only");
        if (only !== undefined && only !== "on" && only !== "off") throw new GroupUsageError("--admins-only takes on or off");
        need(args, 1, "group");
        if (title === undefined && only === undefined) throw new GroupUsageError("nothing to change (--title, --admins-only)");
        const g = await resolveGroup(groups, args[0]);
        out(formatGroup(await groups.changeSettings(g.groupId, { title, adminsOnlyMessages: only === undefined ? undefined : only === "on" })));
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
        out(`sent ${m.id} to ${g.groupId}`);
        return 0;
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
        const limit = takeFlag(args, "--limit");
        need(args, 1, "group");
        const g = await resolveGroup(groups, args[0]);
        for (const m of await groups.history(g.groupId, { limit: limit ? Number(limit) : undefined })) out(formatMessage(m));
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
