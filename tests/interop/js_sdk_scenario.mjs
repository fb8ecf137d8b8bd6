// End-to-end encryption with matrix-js-sdk and its Rust crypto (the engine of Element Web)
// against a running homeserver: `node js_sdk_scenario.mjs http://127.0.0.1:PORT`.
//
// Each step prints one line, `CHECK ok <step>` or `CHECK FAIL <step>: <why>`, followed on
// failure by the HTTP requests that failed during that step; the process exits non-zero at
// the first failed step. tests/interop/test_js_sdk.py runs it against a fresh mxkeys.

import * as sdk from "matrix-js-sdk";
import { decodeRecoveryKey } from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

const baseUrl = process.argv[2];
if (!baseUrl) {
    process.stderr.write("usage: node js_sdk_scenario.mjs BASE_URL\n");
    process.exit(2);
}
const STEP_TIMEOUT_MS = Number(process.env.STEP_TIMEOUT_MS || 60000);
const VERBOSE = Boolean(process.env.INTEROP_VERBOSE);

// The SDK and its Rust crypto log a great deal through `console`: keep the last lines, to
// show them when a step fails (INTEROP_VERBOSE=1 prints everything as it comes).
const out = (line) => process.stdout.write(line + "\n");
const sdkLog = [];
for (const level of ["log", "info", "debug", "warn", "error", "trace"]) {
    console[level] = (...args) => {
        const line = `[sdk ${level}] ${args.map((a) => (typeof a === "string" ? a : String(a))).join(" ")}`;
        if (VERBOSE) out(line);
        sdkLog.push(line);
        if (sdkLog.length > 60) sdkLog.shift();
    };
}
logger.setLevel(VERBOSE ? "debug" : "warn", false);

// ---- HTTP tracing: every request a client makes, with its status and errcode ----

const httpLog = [];

function tracedFetch(label) {
    return async (input, init = {}) => {
        const url = new URL(input instanceof Request ? input.url : String(input));
        const method = (init.method || "GET").toUpperCase();
        const entry = { who: label, method, path: url.pathname, status: 0, errcode: "" };
        httpLog.push(entry);
        let response;
        try {
            response = await fetch(input, init);
        } catch (e) {
            entry.status = -1;
            entry.errcode = String(e);
            throw e;
        }
        entry.status = response.status;
        if (VERBOSE) out(`HTTP ${response.status} ${method} ${url.pathname} [${label}]`);
        if (response.status >= 400) {
            try {
                const body = await response.clone().json();
                entry.errcode = `${body.errcode || ""} ${body.error || ""}`.trim();
            } catch {
                entry.errcode = "(no JSON body)";
            }
        }
        return response;
    };
}

function describeRequests(since) {
    const failed = httpLog.slice(since).filter((r) => r.status >= 400 || r.status < 0);
    if (failed.length === 0) return "  (no HTTP request failed during this step)";
    return failed
        .map((r) => `  HTTP ${r.status} ${r.method} ${r.path} [${r.who}] ${r.errcode}`)
        .join("\n");
}

// ---- Steps ----

function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const clients = [];

async function step(name, fn) {
    const mark = httpLog.length;
    const started = Date.now();
    try {
        const detail = await withTimeout(Promise.resolve().then(fn), STEP_TIMEOUT_MS, name);
        const extra = detail ? ` (${detail})` : "";
        out(`CHECK ok ${name}${extra} [${Date.now() - started} ms]`);
    } catch (e) {
        out(`CHECK FAIL ${name}: ${e && e.stack ? e.stack : e}`);
        if (e && e.httpStatus) out(`  error from server: ${e.httpStatus} ${e.errcode}`);
        out("  failed HTTP requests during this step:");
        out(describeRequests(mark));
        if (!VERBOSE) {
            out("  last SDK log lines:");
            for (const line of sdkLog.slice(-25)) out(`    ${line.slice(0, 400)}`);
        }
        for (const c of clients) c.stopClient();
        process.exit(1);
    }
}

function assert(cond, message) {
    if (!cond) throw new Error(message);
}

// ---- Client helpers ----

const password = "interop correct horse battery";

async function register(localpart) {
    const client = sdk.createClient({ baseUrl, fetchFn: tracedFetch(localpart) });
    let session;
    try {
        await client.registerRequest({ username: localpart, password });
        throw new Error("registration without auth succeeded; expected a UIA 401");
    } catch (e) {
        session = e.data && e.data.session;
        if (!session) throw e;
    }
    const registered = await client.registerRequest({
        username: localpart,
        password,
        initial_device_display_name: `${localpart} first device`,
        auth: { type: "m.login.dummy", session },
    });
    return {
        userId: registered.user_id,
        accessToken: registered.access_token,
        deviceId: registered.device_id,
    };
}

async function login(localpart, label) {
    const client = sdk.createClient({ baseUrl, fetchFn: tracedFetch(label) });
    const r = await client.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: localpart },
        password,
        initial_device_display_name: label,
    });
    return { userId: r.user_id, accessToken: r.access_token, deviceId: r.device_id };
}

// Answers user-interactive auth as Element does: first without auth (the server may answer
// 401 with a session and its flows), then with the user's password in that session.
function passwordAuth(userId, countRounds) {
    return async (makeRequest) => {
        let session;
        try {
            countRounds(1);
            await makeRequest(null);
            return;
        } catch (e) {
            session = e.data && e.data.session;
            if (!session) throw e;
            const flows = (e.data.flows || []).map((f) => f.stages.join(","));
            if (!flows.includes("m.login.password")) throw new Error(`no password flow: ${flows}`);
        }
        countRounds(2);
        await makeRequest({
            type: "m.login.password",
            identifier: { type: "m.id.user", user: userId },
            password,
            session,
        });
    };
}

// Secret storage keys the "user" knows: the one created in this run, cached by the SDK, or
// typed in as a recovery key on a new device.
function secretStorageCallbacks(keyring) {
    return {
        getSecretStorageKey: async ({ keys }) => {
            for (const keyId of Object.keys(keys)) {
                if (keyring.cached[keyId]) return [keyId, keyring.cached[keyId]];
            }
            if (keyring.recoveryKey) {
                const privateKey = decodeRecoveryKey(keyring.recoveryKey);
                const keyId = Object.keys(keys)[0];
                return [keyId, privateKey];
            }
            return null;
        },
        cacheSecretStorageKey: (keyId, _keyInfo, privateKey) => {
            keyring.cached[keyId] = privateKey;
        },
    };
}

async function startClient(label, creds, keyring, initialSyncLimit = 20) {
    const client = sdk.createClient({
        baseUrl,
        userId: creds.userId,
        accessToken: creds.accessToken,
        deviceId: creds.deviceId,
        fetchFn: tracedFetch(label),
        cryptoCallbacks: secretStorageCallbacks(keyring),
    });
    clients.push(client);
    await client.initRustCrypto({ useIndexedDB: false }); // in-memory crypto store
    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
            if (state === "PREPARED" || state === "SYNCING") resolve();
            if (state === "ERROR") reject(new Error(`sync failed: ${data && data.error}`));
        });
    });
    // The options Element Web starts its client with.
    await client.startClient({
        initialSyncLimit,
        lazyLoadMembers: true,
        threadSupport: true,
        pendingEventOrdering: sdk.PendingEventOrdering.Detached,
    });
    await prepared;
    return client;
}

// Bodies of the decrypted text messages in a room's live timeline.
function decryptedBodies(client, roomId) {
    const room = client.getRoom(roomId);
    if (!room) return { bodies: [], failures: ["room not known to the client"] };
    const bodies = [];
    const failures = [];
    for (const ev of room.getLiveTimeline().getEvents()) {
        if (!ev.isEncrypted()) continue;
        if (ev.isDecryptionFailure()) {
            failures.push(`${ev.getId()}: ${ev.decryptionFailureReason}`);
        } else if (ev.getType() === "m.room.message") {
            bodies.push(ev.getContent().body);
        }
    }
    return { bodies, failures };
}

async function waitForBodies(client, roomId, expected, what) {
    const deadline = Date.now() + STEP_TIMEOUT_MS - 2000;
    for (;;) {
        const { bodies, failures } = decryptedBodies(client, roomId);
        const missing = expected.filter((b) => !bodies.includes(b));
        if (missing.length === 0) return bodies;
        if (Date.now() > deadline) {
            throw new Error(
                `${what}: not decrypted: ${JSON.stringify(missing)}; ` +
                    `decrypted: ${JSON.stringify(bodies)}; failures: ${JSON.stringify(failures)}`,
            );
        }
        await new Promise((r) => setTimeout(r, 100));
    }
}

async function waitFor(what, predicate) {
    const deadline = Date.now() + STEP_TIMEOUT_MS - 2000;
    for (;;) {
        const result = await predicate();
        if (result) return result;
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 250));
    }
}

async function authedGet(creds, path) {
    const response = await tracedFetch("check")(`${baseUrl}/_matrix/client/v3${path}`, {
        headers: { Authorization: `Bearer ${creds.accessToken}` },
    });
    const body = await response.json();
    return { status: response.status, body };
}

// ---- The scenario ----

const suffix = Math.random().toString(16).slice(2, 10);
const aliceKeyring = { cached: {}, recoveryKey: null };
const bobKeyring = { cached: {}, recoveryKey: null };
let aliceCreds, bobCreds, alice, bob, alice2Creds, alice2, roomId;
const aliceMessages = ["hello bob 1", "hello bob 2", "hello bob 3", "hello bob 4"];
const bobReply = "hello alice, from bob";
const whileInvited = "sent while bob was invited";

await step("1. alice and bob register and start clients with Rust crypto", async () => {
    aliceCreds = await register(`alice-${suffix}`);
    bobCreds = await register(`bob-${suffix}`);
    alice = await startClient("alice", aliceCreds, aliceKeyring);
    bob = await startClient("bob", bobCreds, bobKeyring);
    const keys = await alice.getCrypto().getOwnDeviceKeys();
    assert(keys.ed25519 && keys.curve25519, "alice has no device keys");
    // Her device keys reached the server.
    const q = await alice.http.authedRequest("POST", "/keys/query", undefined, {
        device_keys: { [aliceCreds.userId]: [] },
    });
    const dev = q.device_keys[aliceCreds.userId] || {};
    assert(dev[aliceCreds.deviceId], `server does not list alice's device: ${JSON.stringify(q)}`);
    return `alice ${aliceCreds.deviceId}, bob ${bobCreds.deviceId}`;
});

await step("2a. alice bootstraps cross-signing (UIA answered with her password if asked)", async () => {
    const crypto = alice.getCrypto();
    let uiaRounds = 0;
    await crypto.bootstrapCrossSigning({
        setupNewCrossSigning: true,
        authUploadDeviceSigningKeys: passwordAuth(aliceCreds.userId, (n) => (uiaRounds = n)),
    });
    const status = await crypto.getCrossSigningStatus();
    assert(status.publicKeysOnDevice, `cross-signing public keys missing: ${JSON.stringify(status)}`);
    assert(
        status.privateKeysCachedLocally.masterKey &&
            status.privateKeysCachedLocally.selfSigningKey &&
            status.privateKeysCachedLocally.userSigningKey,
        `cross-signing private keys missing: ${JSON.stringify(status)}`,
    );
    await waitFor("alice's device to be cross-signed by her", async () => {
        const s = await crypto.getDeviceVerificationStatus(aliceCreds.userId, aliceCreds.deviceId);
        return s && s.crossSigningVerified;
    });
    return `${uiaRounds} UIA round(s)`;
});

await step("2b. alice sets up secret storage with a new key backup", async () => {
    const crypto = alice.getCrypto();
    await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => {
            const key = await crypto.createRecoveryKeyFromPassphrase();
            aliceKeyring.recoveryKey = key.encodedPrivateKey; // "written down" by the user
            return key;
        },
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
    });
    assert(aliceKeyring.recoveryKey, "no recovery key was generated");
    assert(await crypto.isSecretStorageReady(), "secret storage is not ready");
    // The SDK enables the new backup in the background once it has checked it on the server.
    const version = await waitFor("the key backup to be active", () =>
        crypto.getActiveSessionBackupVersion(),
    );
    const server = await authedGet(aliceCreds, "/room_keys/version");
    assert(server.status === 200, `GET /room_keys/version: ${server.status}`);
    assert(server.body.version === version, `server backup ${server.body.version} != ${version}`);
    return `backup version ${version}`;
});

await step("3. alice creates an encrypted room, invites bob, sends him a message, he joins", async () => {
    const created = await alice.createRoom({
        name: "interop",
        invite: [bobCreds.userId],
        initial_state: [
            {
                type: "m.room.encryption",
                state_key: "",
                content: { algorithm: "m.megolm.v1.aes-sha2" },
            },
        ],
    });
    roomId = created.room_id;
    await waitFor("bob to see the invite", () => bob.getRoom(roomId));
    // Rust crypto shares room keys with invited members too: this one is for bob already.
    await waitFor("alice to see bob invited", () => {
        const room = alice.getRoom(roomId);
        return room && room.getMember(bobCreds.userId)?.membership === "invite";
    });
    await alice.sendTextMessage(roomId, whileInvited);
    await bob.joinRoom(roomId);
    await waitFor("alice to see bob joined", () => {
        const room = alice.getRoom(roomId);
        return room && room.getMember(bobCreds.userId)?.membership === "join";
    });
    assert(
        await alice.getCrypto().isEncryptionEnabledInRoom(roomId),
        "alice's client does not consider the room encrypted",
    );
    return roomId;
});

await step("4. alice sends encrypted messages; bob decrypts them and the one sent before he joined", async () => {
    for (const body of aliceMessages) {
        await alice.sendTextMessage(roomId, body);
    }
    await waitForBodies(bob, roomId, [whileInvited, ...aliceMessages], "bob");
    // What the server holds is ciphertext only.
    const page = await bob.createMessagesRequest(roomId, null, 20, sdk.Direction.Backward);
    const fromAlice = page.chunk.filter((e) => e.sender === aliceCreds.userId && !("state_key" in e));
    assert(fromAlice.length === aliceMessages.length + 1, `server has ${fromAlice.length} messages`);
    for (const e of fromAlice) {
        assert(e.type === "m.room.encrypted", `a message is stored as ${e.type}`);
        assert(e.content.algorithm === "m.megolm.v1.aes-sha2", "not megolm");
        // (The bodies themselves: they hold spaces, which base64 ciphertext never does. A
        // bare "bob" turns up in random ciphertext now and then.)
        const stored = JSON.stringify(e.content);
        for (const body of [whileInvited, ...aliceMessages]) {
            assert(!stored.includes(body), "plaintext on the server");
        }
    }
    return `${aliceMessages.length + 1} messages`;
});

await step("5. alice's room keys reach the server-side key backup", async () => {
    const count = await waitFor("the backup to hold a key", async () => {
        const r = await authedGet(aliceCreds, "/room_keys/version");
        return r.status === 200 && r.body.count >= 1 ? r.body.count : 0;
    });
    return `count ${count}`;
});

await step("6a. alice logs in a new device and unlocks secret storage with the recovery key", async () => {
    alice2Creds = await login(`alice-${suffix}`, "alice2");
    assert(alice2Creds.deviceId !== aliceCreds.deviceId, "the new login reused the device");
    const alice2Keyring = { cached: {}, recoveryKey: aliceKeyring.recoveryKey };
    alice2 = await startClient("alice2", alice2Creds, alice2Keyring, 2);
    const crypto = alice2.getCrypto();
    assert(await crypto.isSecretStorageReady(), "secret storage is not ready on the new device");
    // Like Element: learn the account's cross-signing identity from the server first, then
    // verify the new device with the cross-signing keys from secret storage.
    assert(
        await crypto.userHasCrossSigningKeys(alice2Creds.userId, true),
        "the new device does not see alice's cross-signing keys",
    );
    await crypto.bootstrapCrossSigning({});
    const status = await crypto.getCrossSigningStatus();
    assert(status.privateKeysCachedLocally.selfSigningKey, "cross-signing keys not imported");
    const verified = await waitFor("the new device to be cross-signed", async () => {
        const s = await crypto.getDeviceVerificationStatus(alice2Creds.userId, alice2Creds.deviceId);
        return s && s.crossSigningVerified;
    });
    assert(verified, "the new device is not cross-signed");
    return `device ${alice2Creds.deviceId}`;
});

await step("6b. the new device restores the key backup from the server", async () => {
    const crypto = alice2.getCrypto();
    await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto.checkKeyBackupAndEnable();
    assert(check && check.backupInfo, "no backup found on the server");
    assert(check.trustInfo.trusted, `backup not trusted: ${JSON.stringify(check.trustInfo)}`);
    const result = await crypto.restoreKeyBackup();
    assert(result.imported >= 1, `imported ${result.imported} of ${result.total} keys`);
    return `imported ${result.imported} of ${result.total}`;
});

await step("6c. the new device decrypts the earlier messages from room history", async () => {
    const room = await waitFor("the room on the new device", () => alice2.getRoom(roomId));
    // The initial sync carried only the last events: page back through /messages.
    for (let i = 0; i < 10 && room.oldState.paginationToken !== null; i++) {
        await alice2.scrollback(room, 20);
    }
    await waitForBodies(alice2, roomId, [whileInvited, ...aliceMessages], "alice's new device");
    return `${aliceMessages.length + 1} messages`;
});

await step("7. bob replies encrypted; both of alice's devices decrypt it", async () => {
    // Bob's client learns of alice's new device through the device list updates in /sync.
    await waitFor("bob to know alice's new device", async () => {
        const devices = await bob.getCrypto().getUserDeviceInfo([aliceCreds.userId], true);
        return devices.get(aliceCreds.userId)?.has(alice2Creds.deviceId);
    });
    await bob.sendTextMessage(roomId, bobReply);
    await waitForBodies(alice, roomId, [bobReply], "alice's first device");
    await waitForBodies(alice2, roomId, [bobReply], "alice's new device");
});

await step("8. alice logs out her first device; bob drops it and still reaches her new one", async () => {
    alice.stopClient();
    await alice.logout(true);
    await waitFor("bob to forget alice's old device", async () => {
        const devices = await bob.getCrypto().getUserDeviceInfo([aliceCreds.userId], true);
        const mine = devices.get(aliceCreds.userId);
        return mine && !mine.has(aliceCreds.deviceId) && mine.has(alice2Creds.deviceId);
    });
    const last = "after the logout";
    await bob.sendTextMessage(roomId, last);
    await waitForBodies(alice2, roomId, [last], "alice's new device");
});

await step("9. unimplemented optional endpoints fail cleanly and the clients carry on", async () => {
    // Element calls these; mxkeys answers 404 M_UNRECOGNIZED, which the SDK surfaces as a
    // MatrixError that the application catches, and syncing is not disturbed.
    const calls = {
        typing: () => bob.sendTyping(roomId, true, 5000),
        receipt: () => {
            const events = bob.getRoom(roomId).getLiveTimeline().getEvents();
            return bob.sendReadReceipt(events[events.length - 1]);
        },
        pushers: () => bob.getPushers(),
        "thirdparty/protocols": () => bob.getThirdpartyProtocols(),
        "voip/turnServer": () => bob.turnServer(),
    };
    const answers = [];
    for (const [name, call] of Object.entries(calls)) {
        try {
            await call();
            answers.push(`${name}: ok`);
        } catch (e) {
            assert(e.errcode === "M_UNRECOGNIZED" && e.httpStatus === 404, `${name}: ${e}`);
            answers.push(`${name}: 404`);
        }
    }
    const ping = "still syncing";
    await alice2.sendTextMessage(roomId, ping);
    await waitForBodies(bob, roomId, [ping], "bob");
    return answers.join(", ");
});

await step("10. alice resets her cross-signing keys (UIA with her password); bob's client notices", async () => {
    const crypto = alice2.getCrypto();
    const before = await crypto.getCrossSigningKeyId();
    let uiaRounds = 0;
    await crypto.bootstrapCrossSigning({
        setupNewCrossSigning: true,
        authUploadDeviceSigningKeys: passwordAuth(alice2Creds.userId, (n) => (uiaRounds = n)),
    });
    const after = await crypto.getCrossSigningKeyId();
    assert(after && after !== before, "the master key did not change");
    assert(uiaRounds === 2, `replacing keys must need UIA; took ${uiaRounds} round(s)`);
    // Bob's client hears of the change through device_lists in /sync, fetches the new
    // identity and, having pinned the old one, asks its user to approve the change.
    await waitFor("bob's client to notice alice's new identity", async () => {
        const status = await bob.getCrypto().getUserVerificationStatus(alice2Creds.userId);
        return status.needsUserApproval;
    });
    const q = await bob.http.authedRequest("POST", "/keys/query", undefined, {
        device_keys: { [alice2Creds.userId]: [] },
    });
    const master = q.master_keys && q.master_keys[alice2Creds.userId];
    assert(master && Object.values(master.keys).includes(after), "the server has the old key");
    return `${uiaRounds} UIA rounds`;
});

for (const c of clients) c.stopClient();
out("ALL CHECKS PASSED");
process.exit(0);
