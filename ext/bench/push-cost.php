<?php
/**
 * `make bench-php`: per-event cost, inside a PHP process, of
 *
 *   1. bm_push() async   (seal + enqueue; a background sender batches)
 *   2. bm_push() sync    (seal + signed POST to a local relay, wait for its answer)
 *   3. the baseline of the same event sealed with openssl_encrypt
 *      (AES-256-GCM, the same envelope) and signed with hash_hmac, sent with
 *      WordPress's wp_remote_post() — `blocking => false` as Better Messages
 *      does, and blocking
 *
 * against a real relay on loopback. WordPress's HTTP API is loaded from
 * Debian's /usr/share/wordpress without a database (only the files the
 * HTTP API needs; options answered by pre_option_* filters).
 * The four cases run interleaved (ten rounds of a slice of each), so load
 * from other processes on a shared machine weighs on all of them alike.
 * Prints p50/p99 in microseconds and the ratios. Not a test: no pass/fail
 * beyond the relay accepting every event.
 */

require dirname(__DIR__, 2) . '/php-tests/lib/bm-api-harness.php';

$N = (int) (getenv('BM_BENCH_N') ?: 2000);
$WARM = 200;

if (!extension_loaded('bm_relay')) {
    fwrite(STDERR, "bench-php: run with php -d extension=…/bm_relay.so\n");
    exit(2);
}

// --- WordPress's HTTP API without a database --------------------------------
define('ABSPATH', '/usr/share/wordpress/');
define('WPINC', 'wp-includes');
function get_bloginfo($show = '', $filter = 'raw')
{
    return $show === 'version' ? $GLOBALS['wp_version'] : 'http://127.0.0.1';
}
foreach (['version.php', 'load.php', 'compat.php', 'class-wp-error.php', 'plugin.php', 'functions.php',
    'formatting.php', 'http.php', 'class-requests.php', 'class-wp-http.php', 'class-wp-http-response.php',
    'class-wp-http-requests-response.php', 'class-wp-http-requests-hooks.php', 'class-wp-http-proxy.php',
    'class-wp-http-cookie.php', 'class-wp-http-encoding.php'] as $f) {
    require_once ABSPATH . WPINC . '/' . $f;
    if ($f === 'class-requests.php') {
        Requests::register_autoloader();
        Requests::set_certificate_path(ABSPATH . WPINC . '/certificates/ca-bundle.crt');
    }
}
// Options come from filters, never from the (absent) database.
foreach (['siteurl' => 'http://127.0.0.1', 'home' => 'http://127.0.0.1', 'blog_charset' => 'UTF-8'] as $opt => $val) {
    add_filter("pre_option_$opt", fn() => $val);
}
if (!function_exists('wp_remote_post')) {
    fwrite(STDERR, "bench-php: could not load WordPress's HTTP API\n");
    exit(1);
}

$load = implode(' ', array_slice(explode(' ', (string) file_get_contents('/proc/loadavg')), 0, 3));

// --- a relay and a site -------------------------------------------------------
$site = 'bench.example';
$secret = BM_Test::new_secret();
$relay = (new BM_Test_Relay([$site => $secret]))->start();
bm_configure(['url' => $relay->url, 'site' => $site, 'secret' => $secret, 'mode' => 'async', 'queue_size' => 100000]);
// The relay on one core, this PHP process (and its sender thread) on the
// other, as the relay benchmarks pin server and load generator: the relay's
// work answering each batch must not land on the PHP request's core (in
// production it runs on other cores or another machine). BM_BENCH_PIN=0
// turns it off.
$pinned = false;
if (getenv('BM_BENCH_PIN') !== '0' && (int) shell_exec('nproc --all') >= 2 && trim((string) shell_exec('command -v taskset')) !== '') {
    // Pinned before the first push: the background sender thread, started
    // then, shares the PHP thread's core (it runs SCHED_BATCH at nice 10,
    // so it does not preempt the request). Left free to run on the relay's
    // core instead, it made the push tail 2-4x longer in trials here.
    exec('taskset -a -p -c 1 ' . (int) $relay->pid() . ' >/dev/null 2>&1', $_, $rc1);
    exec('taskset -a -p -c 0 ' . getmypid() . ' >/dev/null 2>&1', $_, $rc2);
    $pinned = $rc1 === 0 && $rc2 === 0;
}

$event = ['type' => 'message.new', 'thread' => 12, 'to' => [1, 2],
    'data' => ['id' => 77, 'thread' => 12, 'sender' => 1, 'text' => 'Hello, world — a short chat message of typical length.', 'time' => 1764000000]];

function pct(array $t, float $p): float
{
    sort($t);
    return $t[(int) floor((count($t) - 1) * $p / 100)];
}

/**
 * Times each case $n times (after $warm untimed runs of each), interleaved:
 * $rounds rounds, each running a slice of every case in turn, so that load
 * from other processes on a shared machine falls on all cases alike and the
 * ratios stay fair. Returns microsecond samples per case.
 *
 * The async case flushes only at the end of its slice (untimed): while it
 * pushes, the background sender sends batches concurrently, as in a request
 * that pushes several events. (Timing a push right after a blocking
 * bm_flush would mostly time this VM waking the CPU that idled during the
 * wait: any PHP code runs about 2× slower for its first few µs then, and a
 * real request reaches bm_push after milliseconds of warm PHP work.)
 *
 * @param array<string, array{0: callable, 1: ?callable, 2: ?callable}> $cases
 *        name => [event fn, before-slice fn (e.g. set the mode), after-slice fn (e.g. flush, untimed)]
 */
function measure_interleaved(array $cases, int $n, int $warm, int $rounds): array
{
    $t = array_fill_keys(array_keys($cases), []);
    foreach ($cases as [$fn, $before, $after]) {
        $before && $before();
        for ($i = 0; $i < $warm; $i++) {
            $fn();
        }
        $after && $after();
    }
    $slice = intdiv($n, $rounds);
    for ($r = 0; $r < $rounds; $r++) {
        foreach ($cases as $name => [$fn, $before, $after]) {
            $before && $before();
            for ($i = 0; $i < $slice; $i++) {
                $a = hrtime(true);
                $fn();
                $t[$name][] = (hrtime(true) - $a) / 1000;
            }
            $after && $after();
        }
    }
    return $t;
}

// The baseline: the same envelope with PHP's openssl + hash_hmac, posted with wp_remote_post.
$b64u = fn(string $b) => rtrim(strtr(base64_encode($b), '+/', '-_'), '=');
$hkdf = fn(string $ikm, string $info) => hash_hkdf('sha256', $ikm, 32, $info, 'bm-relay/v1');
$raw_secret = base64_decode(strtr($secret, '-_', '+/'));
$relay_key = $hkdf($raw_secret, 'relay');
$thread_key = $hkdf($hkdf($raw_secret, 'content'), 'thread/12/0');
$baseline = function (bool $blocking) use ($event, $site, $relay, $b64u, $relay_key, $thread_key) {
    $id = $b64u(random_bytes(16));
    $k = 't/12/0';
    $nonce = random_bytes(12);
    $plain = json_encode(['type' => $event['type'], 'data' => $event['data']], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
    $c = openssl_encrypt($plain, 'aes-256-gcm', $thread_key, OPENSSL_RAW_DATA, $nonce, $tag, "bm1|$site|$id|$k");
    $env = json_encode(['v' => 1, 'id' => $id, 'k' => $k, 'n' => $b64u($nonce), 'c' => $b64u($c . $tag)]);
    $body = '{"events":[{"to":[1,2],"e":' . $env . '}]}';
    $ts = time();
    $sig = 'v1=' . hash_hmac('sha256', "$ts\n$site\nPOST /v1/push\n$body", $relay_key);
    return wp_remote_post($relay->url . '/v1/push', ['blocking' => $blocking, 'timeout' => 2, 'body' => $body,
        'headers' => ['Content-Type' => 'application/json', 'X-BM-Site' => $site, 'X-BM-Timestamp' => (string) $ts, 'X-BM-Signature' => $sig]]);
};
// One blocking baseline call must be accepted, or the comparison is void.
$r = $baseline(true);
if (is_wp_error($r) || wp_remote_retrieve_response_code($r) !== 200) {
    fwrite(STDERR, 'bench-php: the relay refused the baseline push: ' . (is_wp_error($r) ? $r->get_error_message() : wp_remote_retrieve_body($r)) . "\n");
    exit(1);
}

$before = bm_stats();
// Protocol 2 (ids mapped to pseudonyms, PROTOCOL.md §3.2) beside
// protocol 1, interleaved in the same run, when the extension has it (an
// older build, run for a before/after comparison, measures protocol 1 only).
$has_v2 = ini_get('bm_relay.protocol') !== false;
$p = fn(int $v) => $has_v2 ? ['protocol' => $v] : [];
$async = fn() => bm_configure(['mode' => 'async'] + $p(1));
$sync = fn() => bm_configure(['mode' => 'sync'] + $p(1));
$async2 = fn() => bm_configure(['mode' => 'async', 'protocol' => 2]);
$sync2 = fn() => bm_configure(['mode' => 'sync', 'protocol' => 2]);
$flush = fn() => bm_flush(5000);
$ROUNDS = 10;
$v2_cases = $has_v2 ? [
    'bm_push async, protocol 2' => [fn() => bm_push($event), $async2, $flush],
    'bm_push sync, protocol 2' => [fn() => bm_push($event), $sync2, null],
] : [];
$results = measure_interleaved([
    'bm_push async' => [fn() => bm_push($event), $async, $flush],
    'bm_push sync' => [fn() => bm_push($event), $sync, null],
] + $v2_cases + [
    'openssl + wp_remote_post (blocking=false)' => [fn() => $baseline(false), null, null],
    'openssl + wp_remote_post (blocking)' => [fn() => $baseline(true), null, null],
    // A yardstick for the machine's speed during the run (it varies by 2×
    // on a shared host): PHP's own json_encode of the same event.
    'yardstick: json_encode($event)' => [fn() => json_encode($event), null, null],
], $N, $WARM, $ROUNDS);
$after = bm_stats();
$relay->stop();

$pushed = ($has_v2 ? 4 : 2) * ($N + $WARM);
printf("bm_relay %s, PHP %s, %d events per case (after %d warm-up), cases interleaved in %d rounds, relay on loopback\n",
    phpversion('bm_relay'), PHP_VERSION, $N, $WARM, $ROUNDS);
printf("machine: %d CPUs, load average at start %s; %s\n", (int) shell_exec('nproc --all'), $load,
    $pinned ? 'relay pinned to CPU 1, PHP (and its sender thread) to CPU 0' : 'not pinned');
printf("extension: %d sent, %d failed, %d dropped, %d requests\n\n", $after['sent'] - $before['sent'], $after['failed'] - $before['failed'],
    $after['dropped'] - $before['dropped'], $after['batches'] - $before['batches']);
printf("%-44s %10s %10s\n", 'per event (µs)', 'p50', 'p99');
foreach ($results as $name => $t) {
    printf("%-44s %10.1f %10.1f\n", $name, pct($t, 50), pct($t, 99));
}
$a = $results['bm_push async'];
$s = $results['bm_push sync'];
$nb = $results['openssl + wp_remote_post (blocking=false)'];
$bl = $results['openssl + wp_remote_post (blocking)'];
printf("\nratios (baseline / bm_push, p50):\n");
printf("  wp_remote_post blocking=false / bm_push async: %8.1f×\n", pct($nb, 50) / pct($a, 50));
printf("  wp_remote_post blocking       / bm_push async: %8.1f×\n", pct($bl, 50) / pct($a, 50));
printf("  wp_remote_post blocking       / bm_push sync:  %8.1f×\n", pct($bl, 50) / pct($s, 50));
if ($has_v2) {
    printf("  protocol 2 / protocol 1, async p50: %.2f×, p99: %.2f×; sync p50: %.2f×\n",
        pct($results['bm_push async, protocol 2'], 50) / pct($a, 50), pct($results['bm_push async, protocol 2'], 99) / pct($a, 99),
        pct($results['bm_push sync, protocol 2'], 50) / pct($s, 50));
}
$y = $results['yardstick: json_encode($event)'];
printf("  bm_push async p50 / yardstick p50: %.2f (compare across runs and builds)\n", pct($a, 50) / pct($y, 50));
printf("targets: async p99 < 20 µs: %s; sync p50 < 150 µs: %s; async ≥ 20× cheaper than wp_remote_post(blocking=false): %s\n",
    pct($a, 99) < 20 ? 'met' : 'NOT met', pct($s, 50) < 150 ? 'met' : 'NOT met', pct($nb, 50) / pct($a, 50) >= 20 ? 'met' : 'NOT met');
if ($after['failed'] - $before['failed'] > 0 || $after['sent'] - $before['sent'] < $pushed) {
    fwrite(STDERR, "bench-php: not every event reached the relay\n");
    exit(1);
}
