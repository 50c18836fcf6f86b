<?php
/**
 * Regenerates ext/bm_relay.stub.php (IDE stubs) from the loaded extension.
 *
 *     php -d extension=target/release/libbm_relay.so ext/stubgen.php > ext/bm_relay.stub.php
 *
 * The function list and parameter names come from reflection of the real
 * module, so the stubs cannot drift from it (the script fails when a
 * function has no documentation below, or when the documented parameters
 * differ from the module's). Types and docs are written here because every
 * argument is checked by the extension itself (a wrong type raises
 * BmRelayException, not TypeError), so the arginfo declares them `mixed`.
 * `cargo php stubs` is not used: it needs a debug build and its own crate.
 */

if (!extension_loaded('bm_relay')) {
    fwrite(STDERR, "stubgen: load the extension: php -d extension=…/libbm_relay.so ext/stubgen.php\n");
    exit(2);
}

/** name => [signature (PHP syntax), doc lines] */
$docs = [
    'bm_configure' => ['array $opts): void', [
        'Overrides settings for the rest of this request. Keys are the INI names without',
        'the `bm_relay.` prefix: url, site, secret, secret_file, mode, timeout_ms,',
        'connect_timeout_ms, queue_size, flush_timeout_ms. A null value restores the INI',
        'value. Everything is validated; nothing is applied when one value is invalid.',
        '',
        '@param array<string,string|int|null> $opts',
        '@throws BmRelayException naming the setting',
    ]],
    'bm_push' => ['array $event): array|bool', [
        'Seals one event and sends it to the relay.',
        '',
        'Event: [\'type\' => string, \'data\' => mixed, \'to\' => int[], \'thread\' => ?int,',
        '\'epoch\' => int = 0, \'live\' => bool = false, \'id\' => ?string]. With `thread` the',
        'event is sealed with the thread key, else with the user key of the single user in',
        '`to`. `live` also delivers to the thread\'s current subscribers.',
        '',
        'Async mode (default): queues and returns true, or false when the queue is full',
        '(counted as dropped). Sync mode: waits at most timeout_ms and returns the relay\'s',
        'result [\'online\' => int[], \'sockets\' => int].',
        '',
        '@param array{type:string,data?:mixed,to?:int[],thread?:?int,epoch?:int,live?:bool,id?:?string} $event',
        '@return array{online:int[],sockets:int}|bool',
        '@throws BmRelayException for invalid input (naming the field) and, in sync mode, relay errors (code = HTTP status)',
    ]],
    'bm_push_many' => ['array $events): array|bool', [
        'Like bm_push() for a list of events, delivered in order. All are checked before',
        'any is queued or sent. Async: true, or false (none queued) when they do not all',
        'fit in the queue. Sync: one result per event.',
        '',
        '@param list<array> $events',
        '@return list<array{online:int[],sockets:int}>|bool',
        '@throws BmRelayException naming events[i][\'field\']',
    ]],
    'bm_flush' => ['?int $timeout_ms = null): bool', [
        'Waits until every queued async event was sent or failed, at most $timeout_ms',
        '(default: bm_relay.timeout_ms). True when the queue is empty.',
        '',
        '@throws BmRelayException for a bad timeout',
    ]],
    'bm_seal' => ['array $event): string', [
        'The envelope JSON of an event (same event shape as bm_push()); nothing is sent.',
        '',
        '@throws BmRelayException naming the field',
    ]],
    'bm_open' => ['string $envelope): array', [
        'Opens an envelope of this site with the configured secret.',
        '',
        '@return array{type:string,data:mixed,id:string,k:string}',
        '@throws BmRelayException when it is malformed or does not open',
    ]],
    'bm_client_token' => ['int $user_id, int $ttl = 3600): string', [
        'A connection token (HS256 JWT) for that user\'s browser, valid $ttl seconds.',
        '',
        '@throws BmRelayException naming the argument',
    ]],
    'bm_thread_token' => ['int $user_id, int $thread_id, int $ttl = 3600): string', [
        'A thread token: proof for the relay that the user is a member of the thread.',
        '',
        '@throws BmRelayException naming the argument',
    ]],
    'bm_thread_key' => ['int $thread_id, int $epoch = 0): string', [
        'The thread key t/{thread}/{epoch} (base64url), for the members\' browsers.',
        '',
        '@throws BmRelayException naming the argument',
    ]],
    'bm_user_key' => ['int $user_id): string', [
        'The user key u/{user} (base64url), for that user\'s browsers only.',
        '',
        '@throws BmRelayException naming the argument',
    ]],
    'bm_pseudonym' => ['string $kind, int $id): int', [
        'The protocol v2 pseudonym (docs/PROTOCOL.md §3.2) of a user ($kind "user")',
        'or thread ("thread") id: 1 + 64 bits of HMAC-SHA256 mod 2^53-1, keyed by',
        'a key derived from the site secret. No relay call.',
        '',
        '@throws BmRelayException naming the argument',
    ]],
    'bm_relay_key' => ['): string', [
        'The relay key (base64url): what the relay is configured with for this site.',
        '',
        '@throws BmRelayException when no secret is configured',
    ]],
    'bm_presence' => ['array $user_ids): array', [
        'Those of the users that have at least one open socket. Always waits for the',
        'relay (at most timeout_ms).',
        '',
        '@param int[] $user_ids',
        '@return int[]',
        '@throws BmRelayException for bad ids and relay errors (code = HTTP status)',
    ]],
    'bm_disconnect' => ['array $user_ids, ?int $thread_id = null): int', [
        'Closes the users\' sockets (close code 4003), or with $thread_id revokes only their',
        'subscription to that thread. Returns the number of sockets affected.',
        '',
        '@param int[] $user_ids',
        '@throws BmRelayException for bad ids and relay errors (code = HTTP status)',
    ]],
    'bm_stats' => ['): array', [
        'This process\'s figures: queued, sent, failed, dropped, batches, last_error',
        '([\'message\', \'time\'] or null), latency_p50_us / latency_p99_us (time spent in',
        'bm_push), relay_p50_us / relay_p99_us (relay round trips), url, relays (per relay',
        'URL: answered, unreachable, down_for_ms), site, mode, pid.',
        '',
        '@return array{queued:int,sent:int,failed:int,dropped:int,batches:int,last_error:?array{message:string,time:int},latency_p50_us:int,latency_p99_us:int,relay_p50_us:int,relay_p99_us:int,url:string,relays:list<array{url:string,answered:int,unreachable:int,down_for_ms:int}>,site:string,mode:string,pid:int}',
    ]],
];

$ext = new ReflectionExtension('bm_relay');
$out = "<?php\n\n/**\n * IDE stubs of the bm_relay extension " . $ext->getVersion() . ".\n"
    . " * Generated by `make stubs` (ext/stubgen.php) from the loaded module; do not edit.\n"
    . " * Every argument is validated by the extension: a bad value raises\n"
    . " * BmRelayException (never TypeError). See docs/PHP-API.md.\n */\n\n";
$out .= "/**\n * Thrown for invalid input (the message names the field; code 0) and, in sync\n"
    . " * mode, for relay errors (HTTP status as the code, relay error code in the message).\n */\n"
    . "class BmRelayException extends \\RuntimeException\n{\n}\n";
$names = array_keys($ext->getFunctions());
sort($names);
$missing = array_diff($names, array_keys($docs));
$extra = array_diff(array_keys($docs), $names);
if ($missing || $extra) {
    fwrite(STDERR, 'stubgen: undocumented: ' . implode(', ', $missing) . '; not in the module: ' . implode(', ', $extra) . "\n");
    exit(1);
}
foreach ($docs as $name => [$sig, $lines]) {
    preg_match_all('/\$(\w+)/', $sig, $m);
    $params = array_map(fn($p) => $p->getName(), $ext->getFunctions()[$name]->getParameters());
    if ($m[1] !== $params) {
        fwrite(STDERR, "stubgen: $name has parameters (" . implode(', ', $params) . ') in the module, (' . implode(', ', $m[1]) . ") here\n");
        exit(1);
    }
    $out .= "\n/**\n" . implode('', array_map(fn($l) => rtrim(" * $l") . "\n", $lines)) . " */\nfunction $name($sig\n{\n}\n";
}
echo $out;
