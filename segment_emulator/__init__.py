"""A local Segment: the tracking API, the CDN settings endpoint, and a control API for tests.

Segment cannot be reached from development machines, so the relay is developed and tested
against this emulator. It answers as /work/shared/segment-api.md says Segment answers,
quirks included: unknown keys and wrong regions get 200 and their events vanish.
It does not import Django.

Run
    python -m segment_emulator --host 127.0.0.1 --us-port 9100 --eu-port 9101 \\
        [--register KEY:us|eu ...] [--keys-file keys.json] [--max-events 200000]
        [--max-requests 20000] [--dedupe-window 86400] [--dedupe-max-ids 5000000]
        [--log-level info]
One process, one asyncio loop, two listeners: US (stands for https://api.segment.io) and EU
(https://events.eu1.segmentapis.com). A port of 0 picks a free one. `--keys-file` holds
{"KEY": "eu", ...} or [{"writeKey": "KEY", "region": "eu"}, ...]. SIGINT/SIGTERM stop it.

Tracking API (both listeners; the listener is the region)
    POST /v1/identify|track|page|screen|group|alias   one event; its type is the path's
    POST /v1/batch, /v1/import                         {"batch": [...], "context"?, "integrations"?}
    Write key: `Authorization: Basic base64("KEY:")` (the colon is required) or "writeKey"
    in the body. `Content-Type: application/json` required; `Content-Encoding: gzip` accepted.
    200 {"success": true}       also for unknown keys and keys of the other region
    400 {"success": false, "error": <code>, "message": ...} with error one of
        invalid_write_key (missing, or under 8 characters), invalid_json, invalid_batch,
        invalid_content_type, invalid_content_encoding, event_too_large (an event over
        32,768 bytes of JSON), batch_too_large (a batch body over 512,000 bytes)
    Sizes are of the bytes as sent (decompressed, if gzip): a single call's body, a batch item's
    own bytes from its "{" to its "}", whitespace and escapes included. JSON must be UTF-8;
    nesting deeper than about 980 levels is invalid_json, and a number beyond a double's
    range (1e400) is accepted and reads back as null.
    Events of a 200 are accepted or dropped, with a reason per event: unknown_key,
    wrong_region, over_batch_limit (past 2,500), missing_user_or_anonymous_id,
    missing_event (track), missing_group_id (group), missing_previous_id and
    missing_user_id (alias), invalid_type, not_an_object, invalid_message_id (not a string
    or over 100 characters), duplicate (messageId accepted before, by any key, within the
    dedupe window). An event without a messageId is given one ("api-<uuid>").

CDN (both listeners; stands for https://cdn.segment.com)
    GET /v1/projects/<writeKey>/settings
        404 text "Invalid path or write key provided." for an unregistered key
        200 source settings; integrations["Segment.io"].apiHost is "api.segment.io/v1"
            for a US key and "events.eu1.segmentapis.com/v1" for an EU key

Public API (both listeners; stands for https://api.segmentapis.com and eu1.api.segmentapis.com)
    `Authorization: Bearer <token>`; a token (--public-token TOKEN:ROLE:REGION or
    POST /_emulator/tokens) belongs to its region's workspace, with role owner, source_admin
    or read_only. 401 for a missing, unknown, other-region or under-privileged token.
    GET /  (the workspace)   GET /sources[/<id>]   DELETE /sources/<id> (forgets its key)
    POST /sources/<id>/labels   GET|POST /labels   GET /sources/<id>/connected-destinations
    GET /sources/<id>/connected-warehouses   GET /sources/<id>/settings
    GET /destinations/<id>[/delivery-metrics?sourceId&startTime&endTime&granularity]
    GET /usage/api-calls/sources/daily?period=YYYY-MM-01   (from tracking requests answered 200)
    Every registered write key is a source (named by --source-name KEY=NAME or
    POST /_emulator/sources); writeKeys are empty for read_only tokens. Lists page with
    pagination.count (1-1000, default 200) and opaque pagination.cursor. Faults with
    "scope": "public" and the token as "writeKey": 429 answers errors[0].data.msBeforeNext
    and an RFC 5322 X-RateLimit-Reset. Logged with kind "public", never with the token.

Control API (both listeners, JSON)
    GET    /_emulator/health                          {"ok", "region", "listeners", "pid"}
    GET    /_emulator/keys                            {"keys": [{"writeKey", "region"}]}
    POST   /_emulator/keys    {"writeKey", "region": "us"|"eu"}           201
    DELETE /_emulator/keys/<writeKey>                 200, or 404 if unknown (a revoked key)
    GET    /_emulator/requests?writeKey=&since=&limit=&kind=tracking|settings&messageId=
           newest `limit` (default 1,000) requests with id > since, oldest first, and
           "lastId" to pass as `since` next time. Each: id, time, region, path, kind,
           writeKey, status (null when the connection was reset), messageIds, events,
           accepted, dropped {reason: n}, error, fault
    GET    /_emulator/events?writeKey=&messageId=&limit=
           newest accepted events, oldest first: {requestId, receivedAt, region, path,
           writeKey, payload}; a batch's context/integrations are merged into each payload
    GET    /_emulator/stats[?writeKey=]   exact counters, overall ("total") and per key
           ("keys"): requests, settingsRequests, statuses, received, accepted, dropped,
           droppedByReason, duplicates, rejected (events of non-200 answers), rejectedByReason
    GET    /_emulator/faults                          active faults
    POST   /_emulator/faults  {"writeKey": KEY or "*", "scope": "tracking"|"cdn"|"all",
           "status": 400-599, "retryAfter": s, "latencyMs": ms, "reset": true,
           "count": n requests, "seconds": s}                               201
           status 429 answers Retry-After (retryAfter, else the seconds left) and
           X-RateLimit-Reset (seconds until the fault ends); latencyMs delays and then
           answers normally (or as status/reset say); reset closes the connection with a
           TCP RST. Without count or seconds a fault lasts until cleared. A faulted
           request is logged with its answer and none of its events is accepted.
    DELETE /_emulator/faults[/<writeKey>]             {"cleared": n}
    GET|POST /_emulator/tokens  {"token", "role", "region"}   DELETE /_emulator/tokens/<token>
    POST   /_emulator/sources  {"writeKey", "region", "name"} or {"count", "region", "prefix"}
    POST   /_emulator/reset   {"keys": false}         forgets requests, events, counters,
           dedupe and faults; registered keys too when "keys" is true

Python
    from segment_emulator.testing import run_emulator
    with run_emulator(register={"KEY": "eu"}, dedupe_window=1) as emulator:
        emulator.us_url, emulator.eu_url, emulator.cdn_url  # hosts, without /v1
        emulator.send("track", {...}, write_key="KEY", region="eu")
        emulator.stats("KEY"), emulator.events(message_id=...), emulator.set_fault(...)
"""
