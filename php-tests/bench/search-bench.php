<?php
/**
 * Search at scale (issue #16): fills a private MariaDB (the WordPress
 * suite's harness: own datadir, socket, Debian's WordPress, the plugin from
 * BM_PLUGIN_ZIP) with BENCH_MESSAGES messages (default 1,000,000) in
 * BENCH_THREADS threads (default 10,000) written with a Zipf-distributed
 * English chat vocabulary, builds the FULLTEXT index the way a site
 * upgrading to schema 7 does (BM_Relay_Schema::maybe_upgrade() on the
 * filled table), then times `GET /bm/v1/search` through WordPress's REST
 * server (rest_do_request: permission check, nonce, query, shapes) and the
 * store query alone, p50/p99, for a common word, a middling one, a rare
 * one, two words, a short word beside a long one and a deep page, as a
 * user with 1,000 threads (100k messages) and as one with 5.
 *
 * Not part of `make test`: `make bench-search` (10-20 minutes on 2 cores).
 * BENCH_MESSAGES=100000 BENCH_THREADS=1000 for a quick look.
 * Prints progress to stderr and a Markdown table to stdout (and to
 * run/bench-search/RESULTS.md).
 */

require_once dirname(__DIR__) . '/lib/wp-harness.php';

$messages = (int) (getenv('BENCH_MESSAGES') ?: 1000000);
$threads = (int) (getenv('BENCH_THREADS') ?: 10000);
$pool_mb = (int) (getenv('BENCH_BUFFER_POOL_MB') ?: 1024);
$users = 2000;
$heavy_threads = min(1000, intdiv($threads, 2));
$light_threads = 5;
$batch = 2000;

/** Progress line on stderr. */
function say(string $s): void
{
    fwrite(STDERR, sprintf("[%s] %s\n", gmdate('H:i:s'), $s));
}

$h = new BM_WP_Harness(['http' => false, 'relay' => false]);
$h->start();
say("MariaDB and WordPress up in {$h->run}");
$db = $h->mysqli();
// A server's buffer pool, not the test suite's 64 MB (resized online).
$db->query('SET GLOBAL innodb_buffer_pool_size = ' . ($pool_mb * 1024 * 1024));
$version = $db->query('SELECT VERSION()')->fetch_row()[0];

// Load WordPress in this process (as the suite's bootstrap does).
$_SERVER['HTTP_HOST'] = '127.0.0.1:' . $h->http_port;
$_SERVER['SERVER_NAME'] = '127.0.0.1';
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';
(static function (BM_WP_Harness $h): void {
    require $h->docroot . '/wp-load.php';
})($h);

// A chat vocabulary, most common first (stopwords and short words
// included, as people write them); Zipf s=1 over the ranks.
$vocab = explode(' ', 'i you the to a and it is that for me we on in so what just ok my with have can do be at this but was are not your '
    . 'yes no will get know like think good time how about see when all up now going one out if there then today tomorrow '
    . 'meeting call thanks lunch work send back need sure well really here right let make sounds great later morning night '
    . 'week weekend office team project update email file report plan idea question answer problem issue fix deploy server '
    . 'coffee dinner home train late early soon maybe probably already still again also sorry please thank happy nice cool '
    . 'friday monday tuesday wednesday thursday saturday sunday january march april june july august october december '
    . 'client customer budget invoice contract design review draft slides deadline schedule agenda notes minutes ticket '
    . 'release version branch merge commit test build bug crash error login password account access database backup '
    . 'picture photo video link article book movie music game match score party birthday holiday trip flight hotel '
    . 'weather rain snow sunny cold warm kitchen garden car bike bus station airport downtown street market shop price '
    . 'doctor appointment school class homework exam teacher student library museum concert ticket beach mountain river');
$vocab = array_values(array_unique($vocab));
$n_vocab = count($vocab);
$cdf = [];
$acc = 0.0;
for ($r = 1; $r <= $n_vocab; $r++) {
    $acc += 1.0 / $r;
    $cdf[] = $acc;
}
$word_at = static function () use ($cdf, $acc, $vocab, $n_vocab): string {
    $x = mt_rand() / mt_getrandmax() * $acc;
    $lo = 0;
    $hi = $n_vocab - 1;
    while ($lo < $hi) {
        $mid = ($lo + $hi) >> 1;
        if ($cdf[$mid] < $x) {
            $lo = $mid + 1;
        } else {
            $hi = $mid;
        }
    }
    return $vocab[$lo];
};
mt_srand(16);

$t = BM_Relay_Schema::tables();
$t0 = microtime(true);
say("users: $users");
$rows = [];
for ($u = 1; $u <= $users; $u++) {
    $rows[] = sprintf("('bench%d', '', 'bench%d', 'bench%d@example.test', '2026-01-01 00:00:00', 'Bench User %d')", $u, $u, $u, $u);
}
$db->query('INSERT INTO wp_users (user_login, user_pass, user_nicename, user_email, user_registered, display_name) VALUES ' . implode(',', $rows));
$first_user = (int) $db->insert_id;
$heavy = $first_user;
$light = $first_user + 1;
$cap = serialize(['subscriber' => true]);
$rows = [];
for ($u = 0; $u < $users; $u++) {
    $rows[] = sprintf("(%d, 'wp_capabilities', '%s')", $first_user + $u, $db->real_escape_string($cap));
}
$db->query('INSERT INTO wp_usermeta (user_id, meta_key, meta_value) VALUES ' . implode(',', $rows));

say("threads: $threads (the heavy user in $heavy_threads, the light one in $light_threads)");
$members = [];
$rows = [];
$prows = [];
for ($i = 1; $i <= $threads; $i++) {
    $m = [];
    if ($i <= $heavy_threads) {
        $m[] = $heavy;
    }
    if ($i > $threads - $light_threads) {
        $m[] = $light;
    }
    while (count($m) < 2 + ($i % 3)) {
        $u = $first_user + 2 + mt_rand(0, $users - 3);
        if (!in_array($u, $m, true)) {
            $m[] = $u;
        }
    }
    $members[$i] = $m;
    $rows[] = sprintf("(%d, 'Thread %d', %d, '2025-01-01 00:00:00', '2026-01-01 00:00:00')", $i, $i, $m[0]);
    foreach ($m as $u) {
        $prows[] = sprintf("(%d, %d, '2025-01-01 00:00:00')", $i, $u);
    }
    if (count($rows) >= $batch || $i === $threads) {
        $db->query("INSERT INTO {$t['threads']} (id, subject, created_by, created_at, updated_at) VALUES " . implode(',', $rows));
        $db->query("INSERT INTO {$t['participants']} (thread_id, user_id, joined_at) VALUES " . implode(',', $prows));
        $rows = [];
        $prows = [];
    }
}

// The FULLTEXT index is dropped for the load and built after it by the
// schema upgrade, as on a site that upgrades with a full table.
$db->query("ALTER TABLE {$t['messages']} DROP INDEX content_ft");
say("messages: $messages, in INSERTs of $batch rows");
$rare = 'quokka';
$rare_every = max(1, intdiv($messages, 40));
$start_ts = strtotime('2024-01-01 00:00:00 UTC');
$step = (2 * 365 * 86400) / $messages;
$rows = [];
$t_load = microtime(true);
for ($id = 1; $id <= $messages; $id++) {
    $thread = mt_rand(1, $threads);
    $m = $members[$thread];
    $words = [];
    $len = mt_rand(3, 18);
    for ($k = 0; $k < $len; $k++) {
        $words[] = $word_at();
    }
    if ($id % $rare_every === 0) {
        $words[mt_rand(0, $len - 1)] = $rare;
    }
    $text = ucfirst(implode(' ', $words)) . (mt_rand(0, 3) ? '' : '?');
    $rows[] = sprintf("(%d, %d, '%s', '%s')", $thread, $m[mt_rand(0, count($m) - 1)], $text, gmdate('Y-m-d H:i:s', (int) ($start_ts + $id * $step)));
    if (count($rows) >= $batch || $id === $messages) {
        $db->query("INSERT INTO {$t['messages']} (thread_id, sender_id, content, created_at) VALUES " . implode(',', $rows));
        $rows = [];
        if ($id % 50000 === 0 || $id === $messages) {
            say(sprintf('  %d / %d messages (%.0f s)', $id, $messages, microtime(true) - $t_load));
        }
    }
}
$load_s = microtime(true) - $t_load;
$db->query("UPDATE {$t['threads']} th SET last_message_id = (SELECT MAX(id) FROM {$t['messages']} m WHERE m.thread_id = th.id)");

say('schema upgrade 6 → 7: FULLTEXT index content_ft on the filled table (BM_Relay_Schema::maybe_upgrade)');
update_option(BM_Relay_Schema::OPTION, 6, true);
$t_ix = microtime(true);
BM_Relay_Schema::maybe_upgrade();
$index_s = microtime(true) - $t_ix;
$has = $db->query("SHOW INDEX FROM {$t['messages']} WHERE Key_name = 'content_ft'")->num_rows;
if (!$has || (int) get_option(BM_Relay_Schema::OPTION) !== BM_Relay_Schema::VERSION) {
    fwrite(STDERR, "the upgrade did not add content_ft\n");
    exit(1);
}
$size = $db->query("SELECT ROUND((data_length + index_length) / 1048576) FROM information_schema.tables WHERE table_name = '{$t['messages']}'")->fetch_row()[0];
$db->query("ANALYZE TABLE {$t['messages']}, {$t['participants']}, {$t['threads']}");
say(sprintf('index built in %.1f s; table with indexes %s MB', $index_s, $size));

if (getenv('BENCH_HOLD')) {
    // For looking at plans by hand: the database stays up until killed.
    say("holding: mariadb --socket={$h->socket} wordpress (heavy user $heavy, light user $light)");
    while (true) {
        sleep(60);
    }
}

/** Docs matching a boolean query in the whole table (how much the index hands over). */
$doc_count = static function (string $q) use ($db, $t): int {
    $st = $db->prepare("SELECT COUNT(*) FROM {$t['messages']} WHERE MATCH(content) AGAINST(? IN BOOLEAN MODE)");
    $st->bind_param('s', $q);
    $st->execute();
    return (int) $st->get_result()->fetch_row()[0];
};

/** p-th percentile of sorted samples (nearest rank). */
$pct = static function (array $s, float $p): float {
    sort($s);
    return $s[max(0, (int) ceil($p / 100 * count($s)) - 1)];
};

$cases = [
    ['very common word', 'just', []],
    ['common word', 'meeting', []],
    ['middling word', 'invoice', []],
    ['rare word', $rare, []],
    ['two words', 'meeting tomorrow', []],
    ['last word a prefix', 'meeting tomo', []],
    ['short word beside a long one', 'ok invoice', []],
    ['page 5', 'meeting', ['page' => '5']],
];
$who = ['1,000 threads (heavy)' => $heavy, '5 threads (light)' => $light];
$budget = (float) (getenv('BENCH_SECONDS_PER_CASE') ?: 20);
$out = [];
foreach ($cases as [$label, $q, $more]) {
    $terms = BM_Relay_Search::parse($q);
    $in_table = $doc_count(BM_Relay_Search::boolean_query($terms));
    foreach ($who as $wlabel => $uid) {
        wp_set_current_user($uid);
        $nonce = wp_create_nonce('wp_rest');
        $rest = [];
        $store = [];
        $total = 0;
        $until = microtime(true) + $budget;
        for ($i = 0; $i < 51 && ($i < 6 || microtime(true) < $until); $i++) {
            $req = new WP_REST_Request('GET', '/bm/v1/search');
            $req->set_header('X-WP-Nonce', $nonce);
            $req->set_query_params(['q' => $q] + $more);
            $a = microtime(true);
            $res = rest_do_request($req);
            $b = microtime(true);
            $page = (int) ($more['page'] ?? 1);
            BM_Relay_Search::find($uid, $terms, 20, ($page - 1) * 20);
            $c = microtime(true);
            if ($res->get_status() !== 200) {
                fwrite(STDERR, "search '$q' answered " . $res->get_status() . ': ' . wp_json_encode($res->get_data()) . "\n");
                exit(1);
            }
            $total = (int) $res->get_data()['total'];
            if ($i > 0) {
                // The first run warms the buffer pool; not counted.
                $rest[] = ($b - $a) * 1000;
                $store[] = ($c - $b) * 1000;
            }
        }
        $out[] = sprintf(
            '| %s | `%s`%s | %s | %d | %d | %d | %.1f | %.1f | %.1f | %.1f |',
            $label,
            $q,
            $more ? ' page ' . $more['page'] : '',
            $wlabel,
            $in_table,
            $total,
            count($rest),
            $pct($rest, 50),
            $pct($rest, 99),
            $pct($store, 50),
            $pct($store, 99)
        );
        say(end($out));
    }
}

$report = sprintf(
    "Search at %s messages in %s threads (%s, buffer pool %d MB, %d CPUs, load average %s at the end; %s)\n\n"
        . "- bulk load: %.0f s; schema upgrade to 7 (FULLTEXT index on the filled table): %.1f s; table with indexes: %s MB\n\n"
        . "Scan plan (REGEXP over the user's messages) when their threads hold at most %d messages, else the FULLTEXT index.\n\n"
        . "| query | q | user | rows with the words (site) | the user's matches | runs | REST p50 ms | REST p99 ms | store p50 ms | store p99 ms |\n"
        . "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n%s\n",
    number_format($messages),
    number_format($threads),
    $version,
    $pool_mb,
    (int) trim((string) shell_exec('nproc')),
    implode(' ', array_map(static fn($l) => sprintf('%.1f', $l), sys_getloadavg())),
    gmdate('Y-m-d H:i'),
    $load_s,
    $index_s,
    $size,
    BM_Relay_Search::SCAN_MAX,
    implode("\n", $out)
);
@mkdir($h->root . '/run/bench-search', 0777, true);
file_put_contents($h->root . '/run/bench-search/RESULTS.md', $report);
echo $report;
$db->close();
$h->stop();
