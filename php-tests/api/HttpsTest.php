<?php
/**
 * An https relay URL: the extension's TLS (rustls) verifies the relay's
 * certificate against the system roots (SSL_CERT_FILE replaces them, as
 * for OpenSSL) and then pushes as over http.
 *
 * @group ext-only
 */

require_once __DIR__ . '/RelayTestCase.php';

final class HttpsTest extends RelayTestCase
{
    private static string $dir;
    private static ?BM_Test_Proc $proxy = null;
    private static int $tls_port;

    public static function setUpBeforeClass(): void
    {
        parent::setUpBeforeClass();
        self::$dir = sys_get_temp_dir() . '/bm-tls-' . getmypid() . '-' . bin2hex(random_bytes(3));
        mkdir(self::$dir, 0700);
        $d = self::$dir;
        $steps = [
            ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=bm test CA', '-keyout', "$d/ca.key", '-out', "$d/ca.pem"],
            ['openssl', 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', "$d/relay.key", '-out', "$d/relay.csr"],
        ];
        foreach ($steps as $cmd) {
            [$code, , $err] = BM_Test::run($cmd, 60);
            if ($code !== 0) {
                throw new RuntimeException('openssl failed: ' . $err);
            }
        }
        file_put_contents("$d/ext.cnf", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
        [$code, , $err] = BM_Test::run(['openssl', 'x509', '-req', '-in', "$d/relay.csr", '-CA', "$d/ca.pem", '-CAkey', "$d/ca.key", '-CAcreateserial',
            '-days', '2', '-extfile', "$d/ext.cnf", '-out', "$d/relay.pem"], 60);
        if ($code !== 0) {
            throw new RuntimeException('openssl failed: ' . $err);
        }
        self::$tls_port = BM_Test::free_port();
        self::$proxy = new BM_Test_Proc([PHP_BINARY, __DIR__ . '/fixtures/tls-proxy.php', (string) self::$tls_port, (string) static::$relay->port, "$d/relay.pem", "$d/relay.key"]);
        if (!BM_Test::wait_until(fn() => str_contains(self::$proxy->stdout(), 'ready'), 10.0)) {
            throw new RuntimeException('tls proxy did not start: ' . self::$proxy->stderr());
        }
    }

    public static function tearDownAfterClass(): void
    {
        self::$proxy?->stop();
        foreach ((array) glob(self::$dir . '/*') as $f) {
            @unlink((string) $f);
        }
        @rmdir(self::$dir);
        parent::tearDownAfterClass();
    }

    /** Runs a sync push to the https URL in a child; returns its JSON output. */
    private function push_over_https(array $env): array
    {
        $ini = $this->child_ini(['mode' => 'sync', 'url' => 'https://127.0.0.1:' . self::$tls_port]);
        $cmd = array_merge(BM_Test::php_cmd($ini), ['-r', 'try { echo json_encode(["ok" => bm_push(["type" => "tls", "data" => "over https", "to" => [31]])]); }'
            . ' catch (BmRelayException $e) { echo json_encode(["error" => $e->getMessage(), "code" => $e->getCode()]); }']);
        $p = new BM_Test_Proc($cmd, $env + ['PATH' => getenv('PATH') ?: '/usr/bin:/bin']);
        $p->close_stdin();
        $p->wait(30);
        $out = json_decode($p->stdout(), true);
        $this->assertIsArray($out, $p->stdout() . $p->stderr());
        return $out;
    }

    public function test_a_push_over_https_is_delivered_when_the_relay_certificate_is_trusted(): void
    {
        $l = $this->listener(31);
        $out = $this->push_over_https(['SSL_CERT_FILE' => self::$dir . '/ca.pem']);
        $this->assertSame(['ok' => ['online' => [31], 'sockets' => 1]], $out);
        $this->assertSame('over https', $l->wait_events(1)[0]['payload']['data'] ?? null);
        $l->stop();
    }

    public function test_an_untrusted_relay_certificate_is_refused(): void
    {
        $out = $this->push_over_https(['SSL_CERT_FILE' => '/etc/ssl/certs/ca-certificates.crt']);
        $this->assertSame(0, $out['code'] ?? null);
        $this->assertStringContainsString('bm_push(): relay unreachable for push at https://127.0.0.1:', $out['error'] ?? '');
        $this->assertMatchesRegularExpression('/certificate|UnknownIssuer/i', $out['error']);
    }
}
