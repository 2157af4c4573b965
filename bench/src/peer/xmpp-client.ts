/**
 * The smallest XMPP client the peer benchmark needs (RFC 6120/6121 over plain TCP, no TLS):
 * in-band registration (XEP-0077), SASL PLAIN, resource binding, initial presence (which
 * makes the server send stored offline messages), and chat messages with an id. Stanzas are
 * found by scanning for their closing tags: enough for the server's own well-formed output,
 * not a general XML parser.
 */
import * as net from "node:net";

const STREAM_OPEN = (domain: string) =>
  `<?xml version='1.0'?><stream:stream to='${domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;

export class XmppClient {
  private buf = "";
  private waiters: { test: (b: string) => number; resolve: (s: string) => void }[] = [];
  /** Called with the id of every chat message that arrives. */
  onMessage: ((id: string) => void) | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      this.buf += d;
      this.pump();
    });
    socket.on("error", () => {});
  }

  /** Connects, registers the account if it does not exist, logs in, binds and sends presence. */
  static async login(port: number, domain: string, user: string, password: string, presence = true): Promise<XmppClient> {
    const socket = net.connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const c = new XmppClient(socket);
    await c.open(domain);
    c.send(`<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>${user}</username><password>${password}</password></query></iq>`);
    await c.until("id='reg'"); // result, or conflict when it exists already
    const plain = Buffer.from(`\0${user}\0${password}`).toString("base64");
    c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${plain}</auth>`);
    const auth = await c.until("<success", "<failure");
    if (!auth.includes("<success")) throw new Error(`xmpp login failed for ${user}`);
    await c.open(domain);
    c.send(`<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>`);
    await c.until("id='bind'");
    if (presence) c.send("<presence/>");
    return c;
  }

  send(xml: string): void {
    this.socket.write(xml);
  }

  message(to: string, id: string, body: string): void {
    this.socket.write(`<message to='${to}' id='${id}' type='chat'><body>${body}</body></message>`);
  }

  /**
   * An XEP-0199 ping to the server, resolved at its answer: the server handles one stream's
   * stanzas in order, so everything sent before it has been routed by then.
   */
  async ping(id: string, domain: string): Promise<void> {
    this.send(`<iq type='get' id='${id}' to='${domain}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await this.until(`id='${id}'`);
  }

  close(): void {
    this.socket.end("</stream:stream>");
    this.socket.destroy();
  }

  private async open(domain: string): Promise<void> {
    this.send(STREAM_OPEN(domain));
    await this.until("</stream:features>");
  }

  /** Resolves with the buffered text up to and including the first of `marks` (consumed). */
  private until(...marks: string[]): Promise<string> {
    return new Promise((resolve) => {
      this.waiters.push({
        test: (b) => {
          let end = -1;
          for (const m of marks) {
            const i = b.indexOf(m);
            if (i < 0) continue;
            // Consume through the end of the element that carries the mark (an iq result may
            // be self-closing: <iq .../>).
            const gt = b.indexOf(">", i);
            let e = gt < 0 ? -1 : gt + 1;
            if (m.startsWith("id=") && gt > 0 && b[gt - 1] !== "/") {
              const close = b.indexOf("</iq>", i);
              e = close < 0 ? -1 : close + 5;
            }
            if (e > 0 && (end < 0 || e < end)) end = e;
          }
          return end;
        },
        resolve,
      });
      this.pump();
    });
  }

  private pump(): void {
    for (let w = this.waiters[0]; w; w = this.waiters[0]) {
      const end = w.test(this.buf);
      if (end < 0) return;
      const head = this.buf.slice(0, end);
      this.buf = this.buf.slice(end);
      this.waiters.shift();
      w.resolve(head);
    }
    this.scanMessages();
  }

  /** Reports every complete <message> with a body and drops everything else read so far. */
  private scanMessages(): void {
    for (;;) {
      const start = this.buf.indexOf("<message");
      if (start < 0) {
        this.buf = this.buf.slice(Math.max(0, this.buf.length - 8)); // may hold the start of "<message"
        return;
      }
      const end = this.buf.indexOf("</message>", start);
      if (end < 0) {
        this.buf = this.buf.slice(start);
        return;
      }
      const stanza = this.buf.slice(start, end);
      this.buf = this.buf.slice(end + "</message>".length);
      const id = /\sid=['"]([^'"]+)['"]/.exec(stanza)?.[1];
      if (id && stanza.includes("<body>")) this.onMessage?.(id);
    }
  }
}
