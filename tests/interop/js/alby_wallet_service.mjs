// Alby's NIP-47 wallet service (@getalby/sdk NWCWalletService), unchanged, with an in-memory
// wallet behind it. Usage: node alby_wallet_service.mjs <relay url> <wallet secret hex> <client pubkey hex>
// Prints JSON lines: {"event":"ready"} once its request subscription is live on the relay,
// then {"event":"request","method":...} for each request it answered.
import { NWCWalletService, NWCWalletServiceKeyPair } from "@getalby/sdk/nwc";

const [relayUrl, walletSecret, clientPubkey] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
// The SDK logs its progress with console.info/error: keep stdout for our JSON lines.
console.info = (...a) => process.stderr.write(a.join(" ") + "\n");

const service = new NWCWalletService({ relayUrl });
// Test hook, not a change of behaviour: note when the relay has taken the SDK's own REQ (its
// EOSE), so the Python side publishes only once the service can hear it.
const subscribe = service.relay.subscribe.bind(service.relay);
service.relay.subscribe = (filters, params) =>
  subscribe(filters, { ...params, oneose: () => say({ event: "ready" }) });

const invoices = new Map();
let balance = 21_000_000;
const tx = (fields) => ({
  type: "incoming",
  state: "pending",
  description: "",
  description_hash: "",
  preimage: "",
  fees_paid: 0,
  created_at: Math.floor(Date.now() / 1000),
  expires_at: Math.floor(Date.now() / 1000) + 3600,
  settled_at: undefined,
  metadata: undefined,
  ...fields,
});
const ok = (result) => ({ result, error: undefined });
const handler = {
  getInfo: async () => {
    say({ event: "request", method: "get_info" });
    return ok({
      alias: "alby-sdk test wallet", color: "#000000", pubkey: "", network: "regtest",
      block_height: 1, block_hash: "", methods: ["get_info", "get_balance", "make_invoice",
        "pay_invoice", "lookup_invoice"],
    });
  },
  getBalance: async () => {
    say({ event: "request", method: "get_balance" });
    return ok({ balance });
  },
  makeInvoice: async (req) => {
    say({ event: "request", method: "make_invoice", params: req });
    const paymentHash = "ab".repeat(32);
    const t = tx({ invoice: "lnbcrt1fakeinvoice", payment_hash: paymentHash, amount: req.amount,
      description: req.description ?? "" });
    invoices.set(paymentHash, t);
    return ok(t);
  },
  payInvoice: async (req) => {
    say({ event: "request", method: "pay_invoice", params: req });
    balance -= 1000;
    return ok({ preimage: "cd".repeat(32), fees_paid: 0 });
  },
  lookupInvoice: async (req) => {
    say({ event: "request", method: "lookup_invoice", params: req });
    const t = invoices.get(req.payment_hash);
    if (!t) return { result: undefined, error: { code: "NOT_FOUND", message: "no such invoice" } };
    return ok(t);
  },
};

try {
  await service.publishWalletServiceInfoEvent(
    walletSecret, ["get_info", "get_balance", "make_invoice", "pay_invoice", "lookup_invoice"], [],
  );
  const keypair = new NWCWalletServiceKeyPair(walletSecret, clientPubkey);
  say({ event: "keys", wallet_pubkey: keypair.walletPubkey });
  await service.subscribe(keypair, handler);
} catch (err) {
  say({ event: "fatal", error: String(err?.stack ?? err) });
  process.exit(1);
}
