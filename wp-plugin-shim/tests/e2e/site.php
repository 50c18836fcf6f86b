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
 *   start-relay         start it again
 *   http ext|fallback   restart `php -S` with / without the extension
 *   impl                which bm_relay implementation the web server runs
 *
 * End of stdin, SIGTERM, SIGINT or SIGHUP stop every server (each in its
 * own process group, waited for) and remove the temp directory.
 *
 * Environment: BM_EXT_SO, BM_RELAY_BIN, BM_WP_KEEP (as the harness);
 * BM_HTTP_PORT, BM_RELAY_PORT, BM_ADMIN_PORT fix the ports (default: free
 * ones); BM_SITE_PASSWORD sets the users' password.
 */

declare(strict_types=1);

require dirname(__DIR__, 3) . '/php-tests/lib/wp-harness.php';

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

$ext = (string) getenv('BM_EXT_SO');
$stop = static function () use ($h): void {
    $h->stop();
};
pcntl_async_signals(true);
foreach ([SIGTERM, SIGINT, SIGHUP] as $sig) {
    pcntl_signal($sig, static function () use ($stop): void {
        $stop();
        exit(0);
    });
}

try {
    $h->start();
    repair_links($h->docroot, '/usr/share/wordpress');
    // The chat page, and a probe telling which implementation PHP runs.
    $cmd = array_merge($h->php(), [__DIR__ . '/make-page.php', $h->docroot, $h->url]);
    $proc = proc_open($cmd, [1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes);
    $out = stream_get_contents($pipes[1]);
    $err = stream_get_contents($pipes[2]);
    if (proc_close($proc) !== 0) {
        throw new RuntimeException("creating the chat page failed:\n$out\n$err");
    }
    file_put_contents($h->docroot . '/bm-e2e-impl.php', "<?php\nheader('Content-Type: text/plain');\necho function_exists('bm_push') && (new ReflectionFunction('bm_push'))->isInternal() ? 'extension' : 'fallback';\n");
} catch (Throwable $e) {
    fwrite(STDERR, 'site.php: ' . $e->getMessage() . "\n");
    $stop();
    exit(1);
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
    'password' => $h->password,
    'ws_url' => $h->ws_url,
    'relay_port' => $h->relay_port,
    'admin_port' => $h->admin_port,
    'site' => $h->site,
    'relay_key' => $h->relay_key,
    'run' => $h->run,
    'impl' => $impl(),
]);

while (($line = fgets(STDIN)) !== false) {
    $cmd = trim($line);
    try {
        switch ($cmd) {
            case 'stop-relay':
                $h->stop_relay();
                say(['ok' => $cmd]);
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
            case 'impl':
                say(['ok' => $cmd, 'impl' => $impl()]);
                break;
            case '':
                break;
            default:
                say(['error' => 'unknown command ' . json_encode($cmd)]);
        }
    } catch (Throwable $e) {
        say(['error' => $e->getMessage()]);
    }
}
$stop();
