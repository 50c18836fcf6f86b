<?php
/**
 * Test helpers for the bm_relay PHP API suites: a real relay, real
 * WebSocket subscribers (`bm-relay listen`), PHP children (CLI, `php -S`,
 * PHP-FPM) that load the same implementation as the test process.
 *
 * Every server is started in its own process group (setsid) and stopped by
 * killing the group and waiting for the child; stop() also runs at shutdown
 * so a failing test leaves nothing behind. Every wait is bounded.
 *
 * Environment: BM_RELAY_BIN (default target/release/bm-relay), BM_EXT_SO
 * (the extension the children load; default: the one this process loaded,
 * if any; without it the children use the pure-PHP fallback).
 */

require_once __DIR__ . '/free-port.php';

/** Shared small utilities. */
final class BM_Test
{
    /** Repository root. */
    public static function root(): string
    {
        return dirname(__DIR__, 2);
    }

    /** The vectors made outside the project. */
    public static function vectors(): array
    {
        static $v = null;
        return $v ??= json_decode((string) file_get_contents(self::root() . '/testdata/crypto-v1.json'), true, 512, JSON_THROW_ON_ERROR);
    }

    /** A free loopback TCP port. */
    public static function free_port(): int
    {
        return bm_test_free_port();
    }

    /** A new random site secret (b64u, 43 chars). */
    public static function new_secret(): string
    {
        return rtrim(strtr(base64_encode(random_bytes(32)), '+/', '-_'), '=');
    }

    /** The relay binary. */
    public static function relay_bin(): string
    {
        $bin = getenv('BM_RELAY_BIN') ?: self::root() . '/target/release/bm-relay';
        if (!is_executable($bin)) {
            throw new RuntimeException("relay binary not found at $bin (cargo build --release -p bm-relay)");
        }
        return $bin;
    }

    /** The extension .so the children load, or null for the fallback. */
    public static function ext_so(): ?string
    {
        if (!extension_loaded('bm_relay')) {
            return null;
        }
        $so = getenv('BM_EXT_SO') ?: self::root() . '/target/release/libbm_relay.so';
        return is_file($so) ? $so : null;
    }

    /** Prepended to every child script: loads the fallback when the extension is absent. */
    public static function prelude(): string
    {
        return __DIR__ . '/bm-api-prelude.php';
    }

    /**
     * `php` with the same implementation as this process, plus INI settings.
     * @param array<string,string> $ini
     * @return list<string>
     */
    public static function php_cmd(array $ini = []): array
    {
        $cmd = [PHP_BINARY];
        foreach (array_merge(self::base_ini(), $ini) as $k => $v) {
            $cmd[] = '-d';
            $cmd[] = "$k=$v";
        }
        return $cmd;
    }

    /** @return array<string,string> INI every child needs (json, extension or prelude). */
    public static function base_ini(): array
    {
        $ini = ['auto_prepend_file' => self::prelude(), 'error_log' => '', 'log_errors' => '1', 'display_errors' => 'stderr'];
        if (($so = self::ext_so()) !== null) {
            $ini['extension'] = $so;
        }
        return $ini;
    }

    /** bm_relay.* settings for a relay and site. */
    public static function bm_ini(BM_Test_Relay $relay, string $site, string $secret, array $extra = []): array
    {
        $ini = ['bm_relay.url' => $relay->url, 'bm_relay.site' => $site, 'bm_relay.secret' => $secret];
        foreach ($extra as $k => $v) {
            $ini["bm_relay.$k"] = (string) $v;
        }
        return $ini;
    }

    /**
     * Runs a command to completion (bounded), returns [exit code, stdout, stderr].
     * @param list<string> $cmd
     */
    public static function run(array $cmd, float $timeout = 30.0, ?string $stdin = null): array
    {
        $p = new BM_Test_Proc($cmd);
        if ($stdin !== null) {
            $p->write($stdin);
        }
        $p->close_stdin();
        $code = $p->wait($timeout);
        return [$code, $p->stdout(), $p->stderr()];
    }

    /** Polls $cond every 20 ms until true or $timeout seconds pass. */
    public static function wait_until(callable $cond, float $timeout): bool
    {
        $deadline = microtime(true) + $timeout;
        do {
            if ($cond()) {
                return true;
            }
            usleep(20000);
        } while (microtime(true) < $deadline);
        return (bool) $cond();
    }

    /** GET over plain HTTP (no extension needed); null when it fails. */
    public static function http_get(string $url, float $timeout = 2.0): ?array
    {
        $ctx = stream_context_create(['http' => ['timeout' => $timeout, 'ignore_errors' => true]]);
        $body = @file_get_contents($url, false, $ctx);
        if ($body === false) {
            return null;
        }
        $status = 0;
        foreach ($http_response_header ?? [] as $h) {
            if (preg_match('#^HTTP/\S+ (\d+)#', $h, $m)) {
                $status = (int) $m[1];
            }
        }
        return [$status, $body];
    }
}

/** A child process in its own process group, with captured output. */
final class BM_Test_Proc
{
    /** @var resource */
    private $proc;
    /** @var array<int,resource> */
    private array $pipes;
    public int $pid;
    private string $out = '';
    private string $err = '';
    private ?int $code = null;
    /** @var list<BM_Test_Proc> */
    private static array $live = [];

    /** @param list<string> $cmd */
    public function __construct(array $cmd, ?array $env = null, ?string $cwd = null)
    {
        $proc = proc_open(array_merge(['setsid'], $cmd), [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']], $pipes, $cwd, $env);
        if (!is_resource($proc)) {
            throw new RuntimeException('cannot start ' . implode(' ', $cmd));
        }
        $this->proc = $proc;
        $this->pipes = $pipes;
        stream_set_blocking($pipes[1], false);
        stream_set_blocking($pipes[2], false);
        $st = proc_get_status($proc);
        $this->pid = (int) $st['pid'];
        if (!$st['running']) {
            // proc_get_status() reports the exit code only once: keep it.
            $this->code = (int) $st['exitcode'];
        }
        self::$live[] = $this;
        static $registered = false;
        if (!$registered) {
            $registered = true;
            register_shutdown_function(static function (): void {
                foreach (self::$live as $p) {
                    $p->stop();
                }
            });
        }
    }

    public function write(string $data): void
    {
        fwrite($this->pipes[0], $data);
    }

    public function close_stdin(): void
    {
        if (is_resource($this->pipes[0])) {
            fclose($this->pipes[0]);
        }
    }

    /** Reads what is available without blocking. */
    public function pump(): void
    {
        foreach ([1 => 'out', 2 => 'err'] as $i => $field) {
            if (is_resource($this->pipes[$i])) {
                while (($chunk = fread($this->pipes[$i], 65536)) !== false && $chunk !== '') {
                    $this->$field .= $chunk;
                }
            }
        }
    }

    public function stdout(): string
    {
        $this->pump();
        return $this->out;
    }

    public function stderr(): string
    {
        $this->pump();
        return $this->err;
    }

    public function running(): bool
    {
        if ($this->code !== null) {
            return false;
        }
        $st = proc_get_status($this->proc);
        if (!$st['running']) {
            $this->code = (int) $st['exitcode'];
            return false;
        }
        return true;
    }

    /** Waits for exit (bounded); kills the group on timeout. Returns the exit code (-1 when killed). */
    public function wait(float $timeout): int
    {
        $deadline = microtime(true) + $timeout;
        while ($this->running() && microtime(true) < $deadline) {
            $this->pump();
            usleep(10000);
        }
        if ($this->running()) {
            $this->stop();
            return -1;
        }
        $this->pump();
        return (int) $this->code;
    }

    /** Sends a signal to the process group. */
    public function signal(int $signal): void
    {
        if ($this->running()) {
            posix_kill(-$this->pid, $signal);
        }
    }

    /** SIGTERM to the group, then SIGKILL after 3 s; closes and reaps. */
    public function stop(int $signal = SIGTERM): void
    {
        if (!is_resource($this->proc)) {
            return;
        }
        if ($this->running()) {
            @posix_kill(-$this->pid, $signal);
            $deadline = microtime(true) + 3.0;
            while ($this->running() && microtime(true) < $deadline) {
                $this->pump();
                usleep(10000);
            }
            if ($this->running()) {
                @posix_kill(-$this->pid, SIGKILL);
                usleep(50000);
            }
        }
        // Children of the group (php -S workers, FPM workers) too.
        @posix_kill(-$this->pid, SIGKILL);
        $this->pump();
        foreach ($this->pipes as $p) {
            if (is_resource($p)) {
                fclose($p);
            }
        }
        proc_close($this->proc);
        self::$live = array_values(array_filter(self::$live, fn($p) => $p !== $this));
    }
}

/** A real relay on loopback. */
final class BM_Test_Relay
{
    public int $port;
    public int $admin_port;
    public string $url;
    public string $ws_url;
    private ?BM_Test_Proc $proc = null;

    /**
     * @param array<string,string> $sites site => site secret
     * @param list<string> $args more `bm-relay serve` flags (e.g. --accept-v1 false)
     */
    public function __construct(private array $sites, private array $args = [])
    {
        $this->port = BM_Test::free_port();
        $this->admin_port = BM_Test::free_port();
        $this->url = "http://127.0.0.1:{$this->port}";
        $this->ws_url = "ws://127.0.0.1:{$this->port}/v1/ws";
    }

    /** Relay key of a site secret, derived by the relay binary itself (not by the code under test). */
    public static function relay_key(string $secret): string
    {
        [$code, $out, $err] = BM_Test::run([BM_Test::relay_bin(), 'derive', '--secret', '-'], 10, $secret . "\n");
        if ($code !== 0) {
            throw new RuntimeException("bm-relay derive failed: $err");
        }
        if (!preg_match('/[A-Za-z0-9_-]{43}/', $out, $m)) {
            throw new RuntimeException("bm-relay derive printed no key: $out");
        }
        return $m[0];
    }

    /** Starts it and waits for /healthz (bounded). */
    public function start(): self
    {
        $cmd = [BM_Test::relay_bin(), 'serve', '--listen', "127.0.0.1:{$this->port}", '--admin-listen', "127.0.0.1:{$this->admin_port}"];
        foreach ($this->sites as $site => $secret) {
            $cmd[] = '--site';
            $cmd[] = $site . '=' . self::relay_key($secret);
        }
        array_push($cmd, ...$this->args);
        $this->proc = new BM_Test_Proc($cmd, ['RUST_LOG' => 'warn', 'PATH' => getenv('PATH') ?: '/usr/bin:/bin']);
        $ok = BM_Test::wait_until(fn() => (BM_Test::http_get("http://127.0.0.1:{$this->admin_port}/healthz", 0.5)[0] ?? 0) === 200, 10.0);
        if (!$ok) {
            $err = $this->proc->stderr();
            $this->stop();
            throw new RuntimeException("relay did not become ready: $err");
        }
        return $this;
    }

    public function stop(): void
    {
        $this->proc?->stop();
        $this->proc = null;
    }

    public function running(): bool
    {
        return $this->proc?->running() ?? false;
    }

    /** The relay's process id (its process group), null when not started. */
    public function pid(): ?int
    {
        return $this->proc?->pid;
    }

    /** SIGSTOP: the relay holds connections but answers nothing until resume(). */
    public function pause(): void
    {
        $this->proc?->signal(SIGSTOP);
    }

    /** SIGCONT after pause(). */
    public function resume(): void
    {
        $this->proc?->signal(SIGCONT);
    }
}

/** A real WebSocket subscriber: `bm-relay listen`, opening envelopes with the site secret. */
final class BM_Test_Listener
{
    private BM_Test_Proc $proc;

    /** @param array<int,string> $threads thread id => thread token */
    public function __construct(BM_Test_Relay $relay, string $token, string $site, string $secret, array $threads = [], int $count = 0, int $timeout = 60)
    {
        $cmd = [BM_Test::relay_bin(), 'listen', '--url', $relay->ws_url, '--token', $token, '--secret', '-', '--site', $site, '--timeout', (string) $timeout];
        foreach ($threads as $t => $tt) {
            array_push($cmd, '--thread', (string) $t, '--thread-token', $tt);
        }
        if ($count > 0) {
            array_push($cmd, '--count', (string) $count);
        }
        $this->proc = new BM_Test_Proc($cmd);
        $this->proc->write($secret . "\n");
        $this->proc->close_stdin();
        $want = 1 + count($threads);
        $ok = BM_Test::wait_until(fn() => count(array_filter($this->frames(), fn($f) => in_array($f['op'] ?? '', ['ready', 'ok'], true))) >= $want || !$this->proc->running(), 10.0);
        if (!$ok || !$this->proc->running()) {
            throw new RuntimeException('listener not ready: ' . $this->proc->stdout() . $this->proc->stderr());
        }
    }

    /** @return list<array> every JSON frame printed so far */
    public function frames(): array
    {
        $frames = [];
        foreach (explode("\n", $this->proc->stdout()) as $line) {
            $line = trim($line);
            if ($line !== '' && $line[0] === '{') {
                $f = json_decode($line, true);
                if (is_array($f)) {
                    $frames[] = $f;
                }
            }
        }
        return $frames;
    }

    /** @return list<array> opened events (`op` = `ev`) */
    public function events(): array
    {
        return array_values(array_filter($this->frames(), fn($f) => ($f['op'] ?? '') === 'ev'));
    }

    /** Waits (bounded) for at least $n events; returns them. */
    public function wait_events(int $n, float $timeout = 10.0): array
    {
        BM_Test::wait_until(fn() => count($this->events()) >= $n, $timeout);
        return $this->events();
    }

    /** Waits (bounded) for a close frame; returns it or null. */
    public function wait_close(float $timeout = 10.0): ?array
    {
        $find = function () {
            foreach ($this->frames() as $f) {
                if (($f['op'] ?? '') === 'close') {
                    return $f;
                }
            }
            return null;
        };
        BM_Test::wait_until(fn() => $find() !== null, $timeout);
        return $find();
    }

    public function stop(): void
    {
        $this->proc->stop();
    }
}

/** A private PHP-FPM master on a loopback port, driven with cgi-fcgi. */
final class BM_Test_Fpm
{
    public int $port;
    private string $dir;
    private BM_Test_Proc $proc;

    /**
     * @param array<string,string> $ini INI for the master (and so every worker)
     * @param array<string,string> $pool extra pool directives (pm, pm.max_children, pm.max_requests …)
     */
    public function __construct(array $ini, array $pool = [])
    {
        $bin = '/usr/sbin/php-fpm8.2';
        if (!is_executable($bin)) {
            throw new RuntimeException('php8.2-fpm is not installed');
        }
        $this->port = BM_Test::free_port();
        $this->dir = sys_get_temp_dir() . '/bm-fpm-' . getmypid() . '-' . bin2hex(random_bytes(3));
        mkdir($this->dir, 0700, true);
        $pool += ['pm' => 'static', 'pm.max_children' => '2', 'pm.max_requests' => '0'];
        $conf = "[global]\nerror_log = {$this->dir}/fpm.log\ndaemonize = no\npid = {$this->dir}/fpm.pid\n\n[test]\n"
            . "listen = 127.0.0.1:{$this->port}\ncatch_workers_output = yes\nclear_env = no\nrequest_terminate_timeout = 30\n";
        if (posix_getuid() === 0) {
            $conf .= "user = root\ngroup = root\n";
        }
        foreach ($pool as $k => $v) {
            $conf .= "$k = $v\n";
        }
        file_put_contents("{$this->dir}/fpm.conf", $conf);
        $php_ini = '';
        foreach (array_merge(BM_Test::base_ini(), $ini) as $k => $v) {
            $php_ini .= "$k = \"$v\"\n";
        }
        $php_ini .= "error_log = {$this->dir}/php-errors.log\n";
        file_put_contents("{$this->dir}/php.ini", $php_ini);
        $cmd = [$bin, '-F', '-y', "{$this->dir}/fpm.conf", '-c', "{$this->dir}/php.ini"];
        if (posix_getuid() === 0) {
            $cmd[] = '-R';
        }
        $this->proc = new BM_Test_Proc($cmd);
        $ok = BM_Test::wait_until(function () {
            $s = @stream_socket_client("tcp://127.0.0.1:{$this->port}", $e, $es, 0.2);
            if ($s) {
                fclose($s);
                return true;
            }
            return false;
        }, 10.0);
        if (!$ok) {
            $log = @file_get_contents("{$this->dir}/fpm.log");
            $this->stop();
            throw new RuntimeException("php-fpm did not start: $log");
        }
    }

    /**
     * One request through cgi-fcgi: returns [exit code, body].
     * @param array<string,string> $query
     */
    public function request(string $script, array $query = [], float $timeout = 15.0): array
    {
        $env = [
            'SCRIPT_FILENAME' => $script,
            'SCRIPT_NAME' => '/' . basename($script),
            'REQUEST_METHOD' => 'GET',
            'QUERY_STRING' => http_build_query($query),
            'SERVER_PROTOCOL' => 'HTTP/1.1',
            'GATEWAY_INTERFACE' => 'CGI/1.1',
            'REMOTE_ADDR' => '127.0.0.1',
            'PATH' => getenv('PATH') ?: '/usr/bin:/bin',
        ];
        $p = new BM_Test_Proc(['cgi-fcgi', '-bind', '-connect', "127.0.0.1:{$this->port}"], $env);
        $p->close_stdin();
        $t0 = microtime(true);
        $code = $p->wait($timeout);
        $out = $p->stdout();
        $err = $p->stderr();
        $p->stop();
        $pos = strpos($out, "\r\n\r\n");
        $body = $pos === false ? $out : substr($out, $pos + 4);
        if ($code !== 0) {
            // Say why, for the assertion message: exit code, time, cgi-fcgi's stderr.
            $body .= sprintf("\n[cgi-fcgi exit %d after %.2f s%s]", $code, microtime(true) - $t0, $err === '' ? '' : ': ' . trim($err));
        }
        return [$code, $body];
    }

    public function log(): string
    {
        return (string) @file_get_contents("{$this->dir}/fpm.log") . (string) @file_get_contents("{$this->dir}/php-errors.log");
    }

    public function stop(): void
    {
        $this->proc->stop(SIGQUIT);
        foreach ((array) glob("{$this->dir}/*") as $f) {
            @unlink((string) $f);
        }
        @rmdir($this->dir);
    }
}
