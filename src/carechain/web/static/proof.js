/* carechain explorer: check a transaction's inclusion in the ledger log, in the browser.
 *
 * Nothing the server computed is trusted; every hash is recomputed here with WebCrypto.
 *   1. Fetch the envelope; its body must hash to the transaction id:
 *      tx_id = SHA-256(PAE("carechain/tx@1", body)).
 *   2. Leaf hash = SHA-256(0x00 || envelope)                          (RFC 9162 §2.1.1)
 *   3. Fetch the newest checkpoint (C2SP signed note), then the inclusion proof at its size;
 *      the proof's tree size must equal the checkpoint size.
 *   4. The checkpoint's origin must be this chain's, and a node key on chain must have signed
 *      it (C2SP signed-note, Ed25519).
 *   5. Recompute the root from the proof (RFC 9162 §2.1.3.2) and compare it with the
 *      checkpoint root.
 * Every failure says which step failed with "got X, want Y". The result goes to
 * #proof-result with data-status="verified" or "failed".
 */
(() => {
  "use strict";

  const TX_TAG = "carechain/tx@1";
  const MAX_SIZE = 2n ** 64n;
  const enc = new TextEncoder();

  class ProofFailure extends Error {}
  const fail = (message) => { throw new ProofFailure(message); };

  // -- bytes ---------------------------------------------------------------------------
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const sha256 = async (...parts) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", concat(...parts)));
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const show = (value) => JSON.stringify(String(value).slice(0, 80));

  function fromHex(text, what) {
    if (typeof text !== "string" || !/^(?:[0-9a-f]{2})*$/.test(text)) {
      fail(`${what}: got ${show(text)}, want lowercase hex`);
    }
    return Uint8Array.from(text.match(/../g) || [], (h) => parseInt(h, 16));
  }

  function fromBase64(text, what) { // standard or URL alphabet, padding optional
    if (typeof text !== "string" || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) {
      fail(`${what}: got ${show(text)}, want base64`);
    }
    const std = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
    try {
      return Uint8Array.from(atob(std + "=".repeat((4 - (std.length % 4)) % 4)), (c) => c.charCodeAt(0));
    } catch {
      return fail(`${what}: got ${show(text)}, want base64`);
    }
  }

  // -- RFC 9162 §2.1.3.2, after transparency-dev/merkle proof/verify.go ---------------------
  const leafHash = (data) => sha256(Uint8Array.of(0x00), data);
  const nodeHash = (left, right) => sha256(Uint8Array.of(0x01), left, right);
  const bitLength = (n) => (n === 0n ? 0 : n.toString(2).length);
  const onesCount = (n) => n.toString(2).replace(/0/g, "").length;

  /** The root implied by `proof` for `leaf` at `index` (BigInt) in a tree of `size` (BigInt). */
  async function rootFromInclusionProof(index, size, leaf, proof) {
    if (!(index >= 0n && index < size && size < MAX_SIZE)) { // step 1
      fail(`leaf index: got ${index}, want 0 <= index < size ${size} < 2^64`);
    }
    if (leaf.length !== 32) fail(`leaf hash length: got ${leaf.length}, want 32`);
    // inner: levels below where the paths to `index` and `size - 1` part; border: left
    // siblings above that point, one per set bit.
    const inner = bitLength(index ^ (size - 1n));
    const border = onesCount(index >> BigInt(inner));
    if (proof.length !== inner + border) {
      fail(`proof length for index ${index} in size ${size}: got ${proof.length}, want ${inner + border}`);
    }
    proof.forEach((h, i) => { if (h.length !== 32) fail(`proof[${i}] length: got ${h.length}, want 32`); });
    let r = leaf;
    for (let i = 0; i < inner; i++) { // step 4b: a set bit i puts proof[i] on the left
      r = (index >> BigInt(i)) & 1n ? await nodeHash(proof[i], r) : await nodeHash(r, proof[i]);
    }
    for (let i = inner; i < proof.length; i++) r = await nodeHash(proof[i], r); // right border
    return r;
  }

  async function verifyInclusion(index, size, leaf, proof, root) {
    if (root.length !== 32) fail(`root length: got ${root.length}, want 32`);
    const got = await rootFromInclusionProof(index, size, leaf, proof);
    if (!equal(got, root)) { // step 5: compare r against root_hash
      fail(`inclusion proof: calculated root ${hex(got)}, want checkpoint root ${hex(root)}`);
    }
  }

  // -- C2SP tlog-checkpoint in a C2SP signed note ---------------------------------------
  function parseCheckpoint(note) {
    const split = note.lastIndexOf("\n\n");
    if (split < 0) fail("checkpoint: got no blank line before the signatures, want one");
    const text = note.slice(0, split + 1);
    const block = note.slice(split + 2);
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) fail(`checkpoint lines: got ${lines.length}, want >= 3`);
    const [origin, sizeText, rootText] = lines;
    if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeText) || BigInt(sizeText) >= MAX_SIZE) {
      fail(`checkpoint size: got ${show(sizeText)}, want a decimal below 2^64`);
    }
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(rootText)) fail(`checkpoint root: got ${show(rootText)}, want standard base64`);
    const root = fromBase64(rootText, "checkpoint root");
    if (root.length !== 32) fail(`checkpoint root length: got ${root.length}, want 32`);
    if (!block.endsWith("\n")) fail("checkpoint: got no final newline after the signatures, want one");
    const sigs = block.slice(0, -1).split("\n").map((line) => {
      const m = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/.exec(line);
      if (!m) fail(`checkpoint signature line: got ${show(line)}, want "— <name> <base64>"`);
      const raw = fromBase64(m[2], `signature by ${m[1]}`);
      if (raw.length < 5) fail(`signature by ${m[1]}: got ${raw.length} bytes, want key id and signature`);
      return { name: m[1], keyId: raw.slice(0, 4), sig: raw.slice(4) };
    });
    return { origin, size: BigInt(sizeText), root, text, sigs };
  }

  /** Check the note's Ed25519 signatures by `keys` (node keys on chain); describe the result. */
  async function checkNoteSignature(cp, keys) {
    const seen = cp.sigs.map((s) => `${s.name}/${hex(s.keyId)}`).join(", ") || "none";
    let signer = null;
    const unchecked = [];
    for (const k of keys) {
      if (k.alg !== "ed25519") { unchecked.push(`${k.node} (${k.alg})`); continue; }
      const pub = fromBase64(k.pub, `public key of ${k.node}`);
      // C2SP signed-note key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]
      const keyId = (await sha256(enc.encode(k.name), Uint8Array.of(0x0a, 0x01), pub)).slice(0, 4);
      for (const s of cp.sigs.filter((x) => x.name === k.name && equal(x.keyId, keyId))) {
        let ok;
        try {
          const key = await crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
          ok = await crypto.subtle.verify({ name: "Ed25519" }, key, s.sig, enc.encode(cp.text));
        } catch {
          unchecked.push(`${k.node} (this browser has no Ed25519)`);
          continue;
        }
        if (!ok) fail(`checkpoint signature by ${k.node} (key id ${hex(keyId)}): got an invalid signature, want a valid one`);
        signer = k;
      }
    }
    if (signer) return `checkpoint signed by node ${signer.node} (Ed25519, checked here)`;
    if (unchecked.length) return `checkpoint signature not checked: ${unchecked.join(", ")}`;
    const want = keys.map((k) => k.node).join(", ") || "none listed";
    return fail(`checkpoint signatures: got ${seen}, want one by a node key on chain (${want})`);
  }

  // -- the check ---------------------------------------------------------------------------
  async function get(url, what) {
    let response;
    try {
      response = await fetch(url, { cache: "no-store" });
    } catch (err) {
      fail(`${what}: the request failed (${err.message})`);
    }
    if (!response.ok) {
      let detail = "";
      try { detail = (await response.json()).detail || ""; } catch { /* not JSON */ }
      fail(`${what}: got HTTP ${response.status}${detail ? ` (${detail})` : ""}, want 200`);
    }
    return response;
  }

  async function getCheckpoint(api) {
    const bytes = new Uint8Array(await (await get(`${api}/checkpoint`, "GET checkpoint")).arrayBuffer());
    let note;
    try { note = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch { fail("checkpoint: got invalid UTF-8, want a signed note"); }
    return parseCheckpoint(note);
  }

  async function check(button, steps) {
    const { txId, origin, api } = button.dataset;
    const keys = JSON.parse(document.getElementById("checkpoint-keys").textContent);
    const step = (text) => { const li = document.createElement("li"); li.textContent = text; steps.append(li); };

    // 1. the envelope's signed body hashes to the transaction id
    const tx = await (await get(`${api}/transactions/${txId}`, "GET transaction")).json();
    const envelope = fromBase64(tx.envelope_b64, "envelope_b64");
    let body;
    try {
      body = fromBase64(JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(envelope)).body, "envelope body");
    } catch (err) {
      fail(err instanceof ProofFailure ? err.message : "envelope: got bytes that are not a JSON envelope, want {body, sigs}");
    }
    const pae = concat(enc.encode(`CCv1 ${TX_TAG.length} ${TX_TAG} ${body.length} `), body);
    const computedId = hex(await sha256(pae));
    if (computedId !== txId) fail(`transaction id of the envelope: got ${computedId}, want ${txId}`);
    step(`envelope (${envelope.length} bytes) hashes to transaction id ${txId}`);

    // 2. the leaf hash, computed here
    const leaf = await leafHash(envelope);
    step(`leaf hash SHA-256(0x00 ‖ envelope) = ${hex(leaf)}`);

    // 3. checkpoint and proof, at the same tree size
    let cp = await getCheckpoint(api);
    const proofUrl = `${api}/proofs/inclusion?tx=${txId}&size=${cp.size}`;
    const proof = await (await get(proofUrl, "GET inclusion proof")).json();
    if (!Number.isSafeInteger(proof.tree_size) || !Number.isSafeInteger(proof.leaf_index)) {
      fail(`proof: got tree_size ${show(proof.tree_size)} and leaf_index ${show(proof.leaf_index)}, want integers`);
    }
    const size = BigInt(proof.tree_size);
    const index = BigInt(proof.leaf_index);
    if (size > cp.size) cp = await getCheckpoint(api); // a server that ignored size=: the log grew
    if (proof.tx_id !== txId) fail(`proof transaction id: got ${show(proof.tx_id)}, want ${txId}`);
    if (proof.leaf_hash !== hex(leaf)) fail(`proof leaf hash: got ${show(proof.leaf_hash)}, want ${hex(leaf)} (computed here)`);
    if (size !== cp.size) fail(`proof tree size: got ${size}, want the checkpoint size ${cp.size}`);
    if (!Array.isArray(proof.proof)) fail(`proof hashes: got ${show(proof.proof)}, want a list`);
    const hashes = proof.proof.map((h, i) => fromHex(h, `proof[${i}]`));
    step(`proof of ${hashes.length} hash${hashes.length === 1 ? "" : "es"} for index ${index} at tree size ${size}`);

    // 4. the checkpoint is this chain's and signed by a node key on chain
    if (cp.origin !== origin) fail(`checkpoint origin: got ${show(cp.origin)}, want ${show(origin)}`);
    const signature = await checkNoteSignature(cp, keys);
    step(signature);

    // 5. RFC 9162 §2.1.3.2 against the checkpoint root
    await verifyInclusion(index, size, leaf, hashes, cp.root);
    step(`recomputed root equals the checkpoint root ${hex(cp.root)}`);
    return `verified: tx included at index ${index} of tree size ${size}, root ${hex(cp.root)} (${signature})`;
  }

  function init() {
    const button = document.getElementById("check-proof");
    const result = document.getElementById("proof-result");
    const steps = document.getElementById("proof-steps");
    if (!button || !result || !steps) return;
    button.addEventListener("click", async () => {
      button.disabled = true;
      result.removeAttribute("data-status");
      result.setAttribute("aria-busy", "true");
      result.textContent = "checking…";
      steps.replaceChildren();
      try {
        result.textContent = await check(button, steps);
        result.dataset.status = "verified";
      } catch (err) {
        result.textContent = `failed: ${err instanceof ProofFailure ? err.message : `unexpected error: ${err}`}`;
        result.dataset.status = "failed";
      } finally {
        result.removeAttribute("aria-busy");
        button.disabled = false;
      }
    });
  }

  window.carechainProof = { leafHash, rootFromInclusionProof, verifyInclusion, parseCheckpoint, ProofFailure };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
