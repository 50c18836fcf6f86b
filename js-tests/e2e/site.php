<?php
/**
 * Brings up a whole bm-relay site on loopback for the end-to-end test and
 * for `make demo`, using the WordPress suite's harness
 * (php-tests/lib/wp-harness.php): a private MariaDB, Debian's WordPress
 * with the plugin active, the relay, and `php -S` with 4 workers (loading
 * the extension when BM_EXT_SO is set). It adds a page with `[bm_chat]`
 * at /chat/, prints one JSON line describing the site, then obeys
 * commands on stdin, one per line, answering each with one JSON line:
 *
 *   stop-relay          stop the relay (its port stays the same)
 *   kill-relay          SIGKILL the relay (relay 1 in cluster mode): a crash
 *   relay-pid           the relay's process id (to read its memory)
 *   user LOGIN ID [T]   a user LOGIN with user id ID (and the next thread
 *                       id T): distinctive ids for the privacy test
 *   start-relay         start it again
 *   http ext|fallback   restart `php -S` with / without the extension
 *   impl                which bm_relay implementation the web server runs
 *   bulk-threads N A B  N conversations between users A and B (logins),
 *                       more recent than any other, straight into the tables
 *   kill-relay2         SIGKILL relay 2 (cluster mode): a node that dies
 *                       without closing its sockets
 *   smoke               check the site without a browser: /chat/ answers
 *                       with the chat page, and a message Alice posts over
 *                       REST reaches a WebSocket subscriber connected as Bob
 *                       with the tokens WordPress gave him (see smoke())
 *
 * End of stdin, SIGTERM, SIGINT or SIGHUP stop every server (each in its
 * own process group, waited for) and remove the temp directory.
 *
 * Environment: BM_EXT_SO, BM_RELAY_BIN, BM_WP_KEEP (as the harness);
 * BM_HTTP_PORT, BM_RELAY_PORT, BM_ADMIN_PORT fix the ports (default: free
 * ones); BM_SITE_PASSWORD sets the users' password; BM_TOKEN_TTL sets the
 * lifetime of the tokens WordPress gives browsers (filter
 * bm_relay_token_ttl, through a must-use plugin).
 *
 * Cluster (`make demo-cluster`): BM_CLUSTER_NATS="URL1 URL2" (NATS
 * servers already running) starts the site's relay as cluster node
 * relay-1 joined through URL1, and a second relay, relay-2, joined
 * through URL2 (ports BM_RELAY2_PORT, BM_ADMIN2_PORT; default free).
 * WordPress pushes to relay 1 only; the users in BM_RELAY2_USERS
 * (logins, space-separated; default "bob") are given relay 2's URL first
 * in their token bundle, then relay 1's (a must-use plugin on the
 * plugin's `bm_relay_client_urls` filter), so their browsers connect to
 * relay 2 and move to relay 1 if it dies.
 *
 * BM_PUSH_URL: where WordPress pushes (default: the relay), e.g. a
 * recording proxy in front of it. BM_WS_HOST: the host name in the
 * WebSocket URL browsers get (default 127.0.0.1, the site's own);
 * BM_WS_PORT: its port (default the relay's), e.g. a proxy's.
 *
 * BM_CLUSTER_LB=1 (cluster mode) puts a real nginx (Debian's) in front of
 * both relays as docs/DEPLOY.md §10 does: one port, an upstream of relay 1
 * and relay 2 for pushes and WebSockets, the next relay tried when one
 * refuses the connection. WordPress pushes to it and gives every browser
 * its URL (BM_RELAY2_USERS is then ignored).
 */

declare(strict_types=1);

require dirname(__DIR__, 2) . '/php-tests/lib/wp-harness.php';

/** Prints one JSON line and flushes (the parent reads line by line). */
function say(array $what): void
{
    fwrite(STDOUT, json_encode($what, JSON_UNESCAPED_SLASHES) . "\n");
    fflush(STDOUT);
}

/**
 * Debian's WordPress links some bundled libraries (underscore, jQuery
 * plugins …) with relative symlinks into /usr/share/javascript; in the
 * copied site they point nowhere, and the admin bar's scripts fail. Points
 * each broken link at what the original resolves to.
 */
function repair_links(string $docroot, string $origin): void
{
    $it = new RecursiveIteratorIterator(new RecursiveDirectoryIterator($docroot, FilesystemIterator::SKIP_DOTS), RecursiveIteratorIterator::SELF_FIRST);
    foreach ($it as $path => $info) {
        if (!is_link($path) || file_exists($path)) {
            continue;
        }
        $target = realpath($origin . substr($path, strlen($docroot)));
        if ($target !== false) {
            unlink($path);
            symlink($target, $path);
        }
    }
}

/**
 * The demo's self-check (DEMO_SMOKE=1), as a person would do it minus the
 * browser: Bob's cookie login gets the chat page (with the module tag);
 * Bob's `POST /token` gives a connection token and, once Alice has started
 * a thread with him, a thread token; `bm-relay listen` connects with them
 * as Bob's browser would; Alice posts over REST; the listener opens the
 * pushed `message.new` with the site secret and it carries Alice's text,
 * and WordPress reports Bob's socket as a delivery (and as presence).
 *
 * @return array<string,mixed> what was checked, with timings (ms)
 */
function smoke(BM_WP_Harness $h): array
{
    $t0 = microtime(true);
    $ms = static fn(): int => (int) round((microtime(true) - $t0) * 1000);
    $alice = $h->login('alice');
    $bob = $h->login('bob');
    [$code, , $page] = $bob->request('GET', '/chat/');
    if ($code !== 200 || strpos($page, 'id="bm-chat"') === false || !preg_match('#<script type="module" src="([^"]+/assets/bm-chat\.js[^"]*)"#', $page, $m)) {
        throw new RuntimeException("the chat page did not answer as expected (HTTP $code)");
    }
    [$code] = $bob->request('GET', substr(html_entity_decode($m[1]), strlen($h->url)));
    if ($code !== 200) {
        throw new RuntimeException("bm-chat.js: HTTP $code");
    }
    [$code, $body] = $alice->rest('POST', '/threads', ['participants' => [$h->users['bob']], 'subject' => 'Smoke test']);
    if ($code !== 201) {
        throw new RuntimeException("creating a thread: HTTP $code " . json_encode($body));
    }
    $thread = (int) $body['thread']['id'];
    [$code, $tok] = $bob->rest('POST', '/token');
    $keys = array_values(array_filter($tok['threads'] ?? [], static fn($k) => (int) $k['thread'] === $thread));
    if ($code !== 200 || !$keys) {
        throw new RuntimeException("Bob's token bundle: HTTP $code");
    }
    $cmd = [$h->relay_bin(), 'listen', '--url', $tok['url'], '--token', $tok['token'], '--thread', (string) $thread,
        '--thread-token', $keys[0]['token'], '--secret', '-', '--site', $tok['site'], '--count', '1', '--timeout', '15'];
    $proc = proc_open(array_merge(['setsid'], $cmd), [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['file', $h->run . '/smoke-listen.log', 'a']], $pipes);
    if (!is_resource($proc)) {
        throw new RuntimeException('cannot start bm-relay listen');
    }
    $pid = proc_get_status($proc)['pid'];
    try {
        fwrite($pipes[0], $h->secret . "\n");
        fclose($pipes[0]);
        stream_set_blocking($pipes[1], false);
        $buf = '';
        $frames = [];
        $read = static function (float $secs, callable $done) use (&$buf, &$frames, $pipes): bool {
            $deadline = microtime(true) + $secs;
            while (microtime(true) < $deadline) {
                while (($chunk = fread($pipes[1], 65536)) !== false && $chunk !== '') {
                    $buf .= $chunk;
                }
                while (($nl = strpos($buf, "\n")) !== false) {
                    $frames[] = json_decode(substr($buf, 0, $nl), true);
                    $buf = substr($buf, $nl + 1);
                }
                if ($done($frames)) {
                    return true;
                }
                usleep(10000);
            }
            return false;
        };
        $ops = static fn(array $f, string $op): int => count(array_filter($f, static fn($x) => is_array($x) && ($x['op'] ?? '') === $op));
        if (!$read(10, static fn($f) => $ops($f, 'ready') >= 1 && $ops($f, 'ok') >= 1)) {
            throw new RuntimeException('Bob\'s subscriber did not get ready with the tokens WordPress gave: ' . json_encode($frames));
        }
        $subscribed = $ms();
        [$code, $pres] = $alice->rest('GET', "/threads/$thread/presence");
        if ($code !== 200 || !in_array($h->users['bob'], $pres['online'] ?? [], true)) {
            throw new RuntimeException("presence does not show Bob online: HTTP $code " . json_encode($pres));
        }
        $text = 'Hello Bob, from the smoke test ' . bin2hex(random_bytes(3));
        $sent = microtime(true);
        [$code, $body] = $alice->rest('POST', "/threads/$thread/messages", ['text' => $text]);
        if ($code !== 201) {
            throw new RuntimeException("sending: HTTP $code " . json_encode($body));
        }
        $got = null;
        $read(10, static function ($f) use (&$got): bool {
            foreach ($f as $x) {
                if (is_array($x) && ($x['op'] ?? '') === 'ev' && ($x['payload']['type'] ?? '') === 'message.new') {
                    $got = $x['payload']['data'];
                    return true;
                }
            }
            return false;
        });
        $latency = (int) round((microtime(true) - $sent) * 1000);
        if (!is_array($got) || ($got['text'] ?? null) !== $text || (int) ($got['sender'] ?? 0) !== $h->users['alice']) {
            throw new RuntimeException('Bob did not get Alice\'s message through the relay: ' . json_encode($frames));
        }
        if (!in_array($h->users['bob'], $body['delivered_to'] ?? [], true)) {
            throw new RuntimeException('WordPress did not record the delivery to Bob: ' . json_encode($body));
        }
    } finally {
        @posix_kill(-$pid, SIGTERM);
        $deadline = microtime(true) + 3;
        while (proc_get_status($proc)['running'] && microtime(true) < $deadline) {
            usleep(10000);
        }
        @posix_kill(-$pid, SIGKILL);
        proc_close($proc);
    }
    return ['ok' => 'smoke', 'bob_url' => $tok['url'], 'thread' => $thread, 'subscribed_ms' => $subscribed, 'send_to_receive_ms' => $latency, 'total_ms' => $ms()];
}

$h = new BM_WP_Harness(['http' => true, 'relay' => true]);
foreach (['BM_HTTP_PORT' => 'http_port', 'BM_RELAY_PORT' => 'relay_port', 'BM_ADMIN_PORT' => 'admin_port'] as $env => $prop) {
    $v = getenv($env);
    if ($v !== false && $v !== '') {
        if (!preg_match('/^[1-9][0-9]{0,4}$/D', $v) || (int) $v > 65535) {
            fwrite(STDERR, "site.php: $env must be a port number, got " . json_encode($v) . "\n");
            exit(2);
        }
        $h->$prop = (int) $v;
    }
}
$h->url = 'http://127.0.0.1:' . $h->http_port;
$h->relay_url = 'http://127.0.0.1:' . $h->relay_port;
$h->ws_url = 'ws://127.0.0.1:' . $h->relay_port . '/v1/ws';
if (getenv('BM_SITE_PASSWORD')) {
    $h->password = (string) getenv('BM_SITE_PASSWORD');
}
// Fixed ports: say clearly which one is taken instead of a timeout later.
foreach (['http' => $h->http_port, 'relay' => $h->relay_port, 'relay admin' => $h->admin_port] as $what => $port) {
    $probe = @stream_socket_server("tcp://127.0.0.1:$port", $errno, $errstr);
    if (!$probe) {
        fwrite(STDERR, "site.php: port $port ($what) on 127.0.0.1 is in use: $errstr\n");
        exit(3);
    }
    fclose($probe);
}

// A private temp dir for the servers (mariadb-install-db and mariadbd put
// temp tables in $TMPDIR; concurrent installs sharing /tmp have collided).
$tmp = sys_get_temp_dir() . '/bm-site-tmp-' . getmypid() . '-' . bin2hex(random_bytes(3));
if (!mkdir($tmp, 0700)) {
    fwrite(STDERR, "site.php: cannot create $tmp\n");
    exit(1);
}
putenv("TMPDIR=$tmp");

if (preg_match('#^http://127\.0\.0\.1:[0-9]{1,5}$#D', (string) getenv('BM_PUSH_URL'))) {
    $h->relay_url = (string) getenv('BM_PUSH_URL');
}
// BM_WS_HOST: the host name browsers reach the relay by (e.g. localhost
// while the site is 127.0.0.1: another host, so they send it no cookie of
// the site's, as with a relay on a host name of its own).
// BM_WS_PORT: the port they reach it on (default the relay's own), e.g. a
// proxy in front of it that blocks WebSocket upgrades (stream.test.js).
$ws_host = (string) getenv('BM_WS_HOST');
$ws_port = (string) getenv('BM_WS_PORT');
if (!preg_match('/^[a-z0-9.-]{1,64}$/D', $ws_host)) {
    $ws_host = '127.0.0.1';
}
if (!preg_match('/^[1-9][0-9]{0,4}$/D', $ws_port) || (int) $ws_port > 65535) {
    $ws_port = (string) $h->relay_port;
}
$h->ws_url = 'ws://' . $ws_host . ':' . $ws_port . '/v1/ws';

// Cluster mode: relay 1 (the harness's relay) joins through the first
// NATS URL; relay 2 is started below, after the site (it needs the key).
$cluster = preg_split('/\s+/', trim((string) getenv('BM_CLUSTER_NATS')), -1, PREG_SPLIT_NO_EMPTY) ?: [];
$relay2 = null;
if ($cluster) {
    foreach ($cluster as $u) {
        if (!preg_match('#^nats://127\.0\.0\.1:[0-9]{1,5}$#D', $u)) {
            fwrite(STDERR, "site.php: BM_CLUSTER_NATS takes nats://127.0.0.1:PORT URLs, got " . json_encode($u) . "\n");
            exit(2);
        }
    }
    $h->relay_args = ['--nats', $cluster[0], '--node-name', 'relay-1'];
    $relay2 = ['port' => BM_WP_Harness::free_port(), 'admin' => BM_WP_Harness::free_port()];
    foreach (['BM_RELAY2_PORT' => 'port', 'BM_ADMIN2_PORT' => 'admin'] as $env => $k) {
        $v = getenv($env);
        if ($v !== false && $v !== '') {
            if (!preg_match('/^[1-9][0-9]{0,4}$/D', $v) || (int) $v > 65535) {
                fwrite(STDERR, "site.php: $env must be a port number, got " . json_encode($v) . "\n");
                exit(2);
            }
            $relay2[$k] = (int) $v;
        }
    }
    $relay2['ws_url'] = 'ws://127.0.0.1:' . $relay2['port'] . '/v1/ws';
    $relay2['users'] = preg_split('/\s+/', trim((string) (getenv('BM_RELAY2_USERS') ?: 'bob')), -1, PREG_SPLIT_NO_EMPTY);
    if (getenv('BM_CLUSTER_LB') === '1') {
        $relay2['users'] = [];
        $relay2['lb'] = BM_WP_Harness::free_port();
        // WordPress's push URL and the browsers' WebSocket URL: the balancer.
        $h->relay_url = 'http://127.0.0.1:' . $relay2['lb'];
        $h->ws_url = 'ws://127.0.0.1:' . $relay2['lb'] . '/v1/ws';
    }
}

/**
 * BM_CLUSTER_LB: nginx balancing over relay 1 and relay 2 (round robin;
 * a relay that refuses the connection is skipped for 10 s and the request
 * goes to the other, which nginx does even for a POST because nothing was
 * sent yet). Its own prefix dir under the run dir, stopped with the rest.
 *
 * @param array{port:int,lb:int} $r2
 */
function start_balancer(BM_WP_Harness $h, array $r2): void
{
    $dir = $h->run . '/nginx';
    @mkdir($dir . '/tmp', 0700, true);
    $conf = <<<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 512; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream bm_relays {
        server 127.0.0.1:{$h->relay_port} max_fails=1 fail_timeout=10s;
        server 127.0.0.1:{$r2['port']} max_fails=1 fail_timeout=10s;
    }
    server {
        listen 127.0.0.1:{$r2['lb']};
        location / {
            proxy_pass http://bm_relays;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_connect_timeout 1s;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout;
        }
    }
}
CONF;
    file_put_contents($dir . '/nginx.conf', $conf);
    $h->spawn('nginx', [is_executable('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx', '-p', $dir, '-c', $dir . '/nginx.conf']);
    $h->wait_for('nginx', static fn(): bool => @fsockopen('127.0.0.1', $r2['lb'], $errno, $errstr, 0.2) !== false, 10);
}

/**
 * Cluster mode: starts relay 2 (a harness process, stopped with the rest)
 * and the must-use plugin sending the BM_RELAY2_USERS to it.
 *
 * @param array{port:int,admin:int,ws_url:string,users:list<string>} $r2
 */
function start_relay2(BM_WP_Harness $h, array $r2, string $nats): void
{
    $h->spawn('relay2', [$h->relay_bin(), 'serve', '--listen', '127.0.0.1:' . $r2['port'], '--admin-listen', '127.0.0.1:' . $r2['admin'],
        '--site', $h->site . '=' . $h->relay_key, '--nats', $nats, '--node-name', 'relay-2']);
    $deadline = microtime(true) + 15;
    while ($h->http_status('http://127.0.0.1:' . $r2['admin'] . '/healthz') !== 200) {
        if (microtime(true) > $deadline) {
            throw new RuntimeException('relay 2 did not become healthy within 15 s (see relay2.log)');
        }
        usleep(50000);
    }
    if (!$r2['users']) {
        return;
    }
    @mkdir($h->docroot . '/wp-content/mu-plugins', 0755);
    file_put_contents($h->docroot . '/wp-content/mu-plugins/bm-demo-cluster.php', sprintf(<<<'PHP'
<?php
// make demo-cluster: these users' browsers connect to relay 2 first, then
// relay 1 (the site's setting) if it fails; WordPress pushes to relay 1
// and the cluster carries it over.
add_filter('bm_relay_client_urls', static function ($urls, $user) {
    $login = get_userdata((int) $user)->user_login ?? '';
    return in_array($login, %s, true) ? array_merge([%s], (array) $urls) : $urls;
}, 10, 2);
PHP, var_export($r2['users'], true), var_export($r2['ws_url'], true)));
}

$ext = (string) getenv('BM_EXT_SO');
$stop = static function () use ($h, $tmp): void {
    $h->stop();
    exec('rm -rf ' . escapeshellarg($tmp));
};
pcntl_async_signals(true);
$stopping = false;
foreach ([SIGTERM, SIGINT, SIGHUP] as $sig) {
    pcntl_signal($sig, static function () use ($stop, &$stopping): void {
        // Ctrl-C reaches both this process and the shell that started it,
        // which may send TERM as well: stop once, and finish stopping.
        if ($stopping) {
            return;
        }
        $stopping = true;
        $stop();
        exit(0);
    });
}

try {
    $h->start();
    if ($relay2 !== null) {
        start_relay2($h, $relay2, $cluster[count($cluster) - 1]);
    }
    if (isset($relay2['lb'])) {
        start_balancer($h, $relay2);
    }
    repair_links($h->docroot, BM_WP_Harness::wordpress_src());
    // The chat page, and a probe telling which implementation PHP runs.
    $cmd = array_merge($h->php(), [__DIR__ . '/make-page.php', $h->docroot, $h->url]);
    $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
    $out = stream_get_contents($pipes[1]);
    $err = stream_get_contents($pipes[2]);
    if (proc_close($proc) !== 0) {
        throw new RuntimeException("creating the chat page failed:\n$out\n$err");
    }
    $ttl = getenv('BM_TOKEN_TTL');
    if ($ttl !== false && $ttl !== '') {
        // Short-lived browser tokens, so a test sees the page refresh them.
        if (!preg_match('/^[1-9][0-9]{0,5}$/D', $ttl)) {
            throw new RuntimeException('BM_TOKEN_TTL must be a number of seconds');
        }
        @mkdir($h->docroot . '/wp-content/mu-plugins', 0755);
        file_put_contents($h->docroot . '/wp-content/mu-plugins/bm-token-ttl.php', "<?php\nadd_filter('bm_relay_token_ttl', static fn() => $ttl);\n");
    }
    file_put_contents($h->docroot . '/bm-e2e-impl.php', "<?php\nheader('Content-Type: text/plain');\necho function_exists('bm_push') && (new ReflectionFunction('bm_push'))->isInternal() ? 'extension' : 'fallback';\n");
} catch (Throwable $e) {
    fwrite(STDERR, 'site.php: ' . $e->getMessage() . "\n");
    $stopping = true;
    $stop();
    exit(1);
}

/**
 * `bulk-threads N A B`: N conversations between users A and B, straight
 * into the tables, all more recently active than any other (a person with
 * a long history). Returns how many threads A has now.
 */
function bulk_threads(BM_WP_Harness $h, int $n, int $a, int $b): int
{
    $m = $h->mysqli();
    $now = gmdate('Y-m-d H:i:s', time() + 3600);
    $stmt = $m->prepare("INSERT INTO wp_bmr_threads (subject, created_by, created_at, updated_at, epoch, last_message_id) VALUES (?, ?, ?, ?, 0, 0)");
    $part = $m->prepare("INSERT INTO wp_bmr_participants (thread_id, user_id, unread_count, last_read_id, last_delivered_id, key_epoch, joined_at) VALUES (?, ?, 0, 0, 0, 0, ?)");
    $m->begin_transaction();
    for ($i = 0; $i < $n; $i++) {
        $subject = "bulk $i";
        $stmt->bind_param('siss', $subject, $a, $now, $now);
        $stmt->execute();
        $id = $m->insert_id;
        foreach ([$a, $b] as $u) {
            $part->bind_param('iis', $id, $u, $now);
            $part->execute();
        }
    }
    $m->commit();
    $count = (int) $m->query("SELECT COUNT(*) FROM wp_bmr_participants WHERE user_id = $a")->fetch_row()[0];
    $m->close();
    return $count;
}

/**
 * The pid of the process with a listening socket on 127.0.0.1:$port (the
 * harness keeps its children's pids to itself): the socket's inode from
 * /proc/net/tcp, then the process holding it.
 */
function pid_listening_on(int $port): ?int
{
    $inode = null;
    foreach (file('/proc/net/tcp') ?: [] as $line) {
        $f = preg_split('/\s+/', trim($line));
        // local address 0100007F:PORT (127.0.0.1, hex), state 0A (LISTEN)
        if (($f[1] ?? '') === sprintf('0100007F:%04X', $port) && ($f[3] ?? '') === '0A') {
            $inode = $f[9];
            break;
        }
    }
    if ($inode === null) {
        return null;
    }
    foreach (glob('/proc/[0-9]*/fd/*') ?: [] as $fd) {
        if (@readlink($fd) === "socket:[$inode]") {
            return (int) explode('/', $fd)[2];
        }
    }
    return null;
}

/** What the web server runs: 'extension' or 'fallback'. */
$impl = static function () use ($h): string {
    $ch = curl_init($h->url . '/bm-e2e-impl.php');
    curl_setopt_array($ch, [CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT => 10]);
    $body = (string) curl_exec($ch);
    curl_close($ch);
    return trim($body);
};

say([
    'ready' => true,
    'url' => $h->url,
    'chat_url' => $h->url . '/chat/',
    'users' => $h->users,
    'wires' => $h->wires,
    'password' => $h->password,
    'ws_url' => $h->ws_url,
    'relay_port' => $h->relay_port,
    'admin_port' => $h->admin_port,
    'site' => $h->site,
    'relay_key' => $h->relay_key,
    'run' => $h->run,
    // WordPress's folder, for tests that add files to it (translations).
    'docroot' => $h->docroot,
    'impl' => $impl(),
    'relay2' => $relay2 === null ? null : ['ws_url' => $relay2['ws_url'], 'admin_port' => $relay2['admin'], 'users' => $relay2['users'], 'lb' => $relay2['lb'] ?? null],
]);

while (($line = fgets(STDIN)) !== false) {
    $cmd = trim($line);
    try {
        switch ($cmd) {
            case 'stop-relay':
                $h->stop_relay();
                say(['ok' => $cmd]);
                break;
            case 'kill-relay':
                $h->kill_hard('relay');
                say(['ok' => $cmd]);
                break;
            case 'relay-pid':
                say(['ok' => $cmd, 'pid' => $h->pid('relay')]);
                break;
            case 'start-relay':
                $h->start_relay();
                say(['ok' => $cmd]);
                break;
            case 'http ext':
            case 'http fallback':
                if ($cmd === 'http ext' && $ext === '') {
                    throw new RuntimeException('no extension: BM_EXT_SO was not set');
                }
                $h->kill('http');
                putenv($cmd === 'http ext' ? "BM_EXT_SO=$ext" : 'BM_EXT_SO');
                $h->start_http();
                say(['ok' => $cmd, 'impl' => $impl()]);
                break;
            case 'kill-relay2':
                $pid = $relay2 === null ? null : pid_listening_on($relay2['admin']);
                if ($pid === null) {
                    throw new RuntimeException('relay 2 is not running (no cluster mode, or already killed)');
                }
                posix_kill($pid, SIGKILL);
                $deadline = microtime(true) + 5;
                while (posix_kill($pid, 0) && !str_contains((string) @file_get_contents("/proc/$pid/stat"), ') Z ') && microtime(true) < $deadline) {
                    usleep(20000);
                }
                say(['ok' => $cmd, 'pid' => $pid]);
                break;
            case 'smoke':
                say(smoke($h));
                break;
            case 'impl':
                say(['ok' => $cmd, 'impl' => $impl()]);
                break;
            case 'plural-test on':
                // A language with three plural forms (Polish's rule) for the
                // plugin's unread count, through WordPress's own ngettext
                // filter: what a translation with that rule makes _n() say.
                @mkdir($h->docroot . '/wp-content/mu-plugins', 0755);
                file_put_contents($h->docroot . '/wp-content/mu-plugins/bm-plural-test.php', <<<'PHP'
<?php
add_filter('ngettext_bm-relay', static function ($translation, $single, $plural, $n) {
    if ($single !== '%d unread message') {
        return $translation;
    }
    $form = $n == 1 ? 0 : ($n % 10 >= 2 && $n % 10 <= 4 && ($n % 100 < 10 || $n % 100 >= 20) ? 1 : 2);
    return ['one:%d', 'few:%d', 'many:%d'][$form];
}, 10, 4);
PHP);
                say(['ok' => $cmd]);
                break;
            case 'plural-test off':
                @unlink($h->docroot . '/wp-content/mu-plugins/bm-plural-test.php');
                say(['ok' => $cmd]);
                break;
            case '':
                break;
            default:
                if (preg_match('/^user ([a-z][a-z0-9_-]{2,40}) ([1-9][0-9]{0,14})(?: ([1-9][0-9]{0,14}))?$/D', $cmd, $m)) {
                    $args = [__DIR__ . '/make-user.php', $h->docroot, $h->url, $m[1], $h->password, $m[2]];
                    if (isset($m[3])) {
                        $args[] = $m[3];
                    }
                    exec(implode(' ', array_map('escapeshellarg', array_merge($h->php(), $args))) . ' 2>&1', $out, $rc);
                    $made = json_decode((string) end($out), true);
                    if ($rc !== 0 || !is_array($made)) {
                        throw new RuntimeException('make-user.php: ' . implode("\n", $out));
                    }
                    $h->users[$m[1]] = (int) $made['id'];
                    $h->wires[$m[1]] = (int) $made['wire'];
                    say(['ok' => 'user', 'id' => (int) $made['id'], 'wire' => $made['wire'], 'thread_wire' => $made['thread_wire'], 'protocol' => $made['protocol']]);
                    break;
                }
                if (preg_match('/^bulk-threads (\d{1,5}) ([a-z]+) ([a-z]+)$/D', $cmd, $m) && isset($h->users[$m[2]], $h->users[$m[3]])) {
                    say(['ok' => 'bulk-threads', 'threads' => bulk_threads($h, (int) $m[1], $h->users[$m[2]], $h->users[$m[3]])]);
                    break;
                }
                say(['error' => 'unknown command ' . json_encode($cmd)]);
        }
    } catch (Throwable $e) {
        say(['error' => $e->getMessage()]);
    }
}
$stopping = true;
$stop();
