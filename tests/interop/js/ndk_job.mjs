// A customer built with NDK (@nostr-dev-kit/ndk): an encrypted kind-5050 job made with NDK's own
// NDKDVMRequest.encryption(), which seals i, param, output, relays and bid into the content.
// Usage: node ndk_job.mjs <relay url> <customer secret hex> <provider pubkey hex> <bid msats> <prompt>
// Prints JSON lines: "published" (the request as sent), then "feedback" for each kind 7000 as
// NDKDVMJobFeedback.from() reads it (or "feedback_error" when NDK throws on it), then "result"
// with the decrypted content of the kind 6050.
import NDK, { NDKDVMJobFeedback, NDKDVMRequest, NDKPrivateKeySigner } from "@nostr-dev-kit/ndk";

const [relayUrl, secret, providerPubkey, bid, prompt] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
console.log = (...a) => process.stderr.write(a.join(" ") + "\n");

try {
  const signer = new NDKPrivateKeySigner(secret);
  // Only the test relay: no outbox model (it would dial NDK's default public relays).
  const ndk = new NDK({
    explicitRelayUrls: [relayUrl],
    signer,
    enableOutboxModel: false,
    outboxRelayUrls: [],
    autoConnectUserRelays: false,
  });
  await ndk.connect(5000);
  const provider = ndk.getUser({ pubkey: providerPubkey });

  const request = new NDKDVMRequest(ndk);
  request.kind = 5050;
  request.addInput(prompt, "text");
  request.addParam("model", "m1");
  request.output = "text/plain";
  request.bid = Number(bid);
  request.tags.push(["relays", relayUrl]);
  await request.encryption(provider, signer);
  await request.sign(signer);

  const sub = ndk.subscribe(
    { kinds: [7000, 6050], "#e": [request.id] },
    { closeOnEose: false },
    {
      onEvent: async (event) => {
        if (event.kind === 7000) {
          try {
            const fb = await NDKDVMJobFeedback.from(event);
            say({ event: "feedback", status: fb.status, tags: fb.tags });
          } catch (err) {
            say({ event: "feedback_error", error: String(err), content: event.content });
          }
        } else {
          await event.decrypt(provider, signer);
          say({ event: "result", content: event.content, tags: event.tags });
        }
      },
    },
  );
  await request.publish();
  say({ event: "published", request: request.rawEvent() });
} catch (err) {
  say({ event: "fatal", error: String(err?.stack ?? err) });
  process.exit(1);
}
