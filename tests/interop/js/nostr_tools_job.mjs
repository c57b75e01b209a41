// A customer written with nostr-tools alone (finalizeEvent, nip44, Relay): an encrypted kind-5050
// job with a visible bid AND a sealed one, as clients that seal every DVM tag but also keep a
// visible copy produce. It verifies and decrypts each kind 7000 / 6050 reply with nostr-tools.
// Usage: node nostr_tools_job.mjs <relay url> <customer secret hex> <provider pubkey hex>
//                                 <visible bid msats> <sealed bid msats> <prompt>
// Prints JSON lines: "published", then "feedback" (visible tags, the decrypted tag list) and
// "result" (decrypted content); "unverified" for a reply whose signature nostr-tools rejects.
import { finalizeEvent, verifyEvent } from "nostr-tools/pure";
import * as nip44 from "nostr-tools/nip44";
import { Relay } from "nostr-tools/relay";
import { hexToBytes } from "nostr-tools/utils";

const [relayUrl, secretHex, provider, visibleBid, sealedBid, prompt] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

try {
  const secret = hexToBytes(secretHex);
  const key = nip44.getConversationKey(secret, provider);
  const sealed = [["i", prompt, "text"], ["param", "model", "m1"], ["bid", sealedBid]];
  const request = finalizeEvent({
    kind: 5050,
    created_at: Math.floor(Date.now() / 1000),
    content: nip44.encrypt(JSON.stringify(sealed), key),
    tags: [["p", provider], ["encrypted"], ["bid", visibleBid], ["relays", relayUrl]],
  }, secret);

  const relay = await Relay.connect(relayUrl);
  relay.subscribe([{ kinds: [6050, 7000], "#e": [request.id] }], {
    onevent: (event) => {
      if (!verifyEvent(event)) return say({ event: "unverified", id: event.id });
      const plain = nip44.decrypt(event.content, key);
      if (event.kind === 7000) {
        say({ event: "feedback", tags: event.tags, sealed: JSON.parse(plain) });
      } else {
        say({ event: "result", content: plain, tags: event.tags });
      }
    },
  });
  await relay.publish(request);
  say({ event: "published", request });
} catch (err) {
  say({ event: "fatal", error: String(err?.stack ?? err) });
  process.exit(1);
}
