<?php
/**
 * The native extension itself: how it loads, its INI entries, phpinfo()
 * (never the secret), its reflection matching the checked-in stubs.
 *
 * @group ext-only
 */

use PHPUnit\Framework\TestCase;

final class ExtensionTest extends TestCase
{
    private const FUNCTIONS = ['bm_configure', 'bm_push', 'bm_push_many', 'bm_flush', 'bm_seal', 'bm_open', 'bm_client_token',
        'bm_thread_token', 'bm_thread_key', 'bm_user_key', 'bm_relay_key', 'bm_pseudonym', 'bm_presence', 'bm_disconnect', 'bm_stats'];

    protected function setUp(): void
    {
        if (!extension_loaded('bm_relay')) {
            $this->markTestSkipped('the bm_relay extension is not loaded');
        }
    }

    /** Runs PHP with the extension and INI; returns [exit code, stdout, stderr]. */
    private function php(array $ini, string $code): array
    {
        $cmd = [PHP_BINARY, '-d', 'extension=' . BM_Test::ext_so()];
        foreach ($ini as $k => $v) {
            array_push($cmd, '-d', "$k=$v");
        }
        array_push($cmd, '-r', $code);
        return BM_Test::run($cmd, 20);
    }

    public function test_it_is_the_module_bm_relay_with_the_documented_api(): void
    {
        $ext = new ReflectionExtension('bm_relay');
        $this->assertSame('bm_relay', $ext->getName());
        $this->assertMatchesRegularExpression('/^\d+\.\d+\.\d+/', (string) $ext->getVersion());
        $names = array_keys($ext->getFunctions());
        sort($names);
        $want = self::FUNCTIONS;
        sort($want);
        $this->assertSame($want, $names);
        $this->assertSame(['BmRelayException'], array_keys($ext->getClasses()));
        $this->assertSame(RuntimeException::class, get_parent_class(BmRelayException::class));
    }

    public function test_ini_entries_are_registered_with_their_defaults_at_system_level(): void
    {
        $ini = ini_get_all('bm_relay');
        $this->assertSame(['bm_relay.connect_timeout_ms', 'bm_relay.flush_timeout_ms', 'bm_relay.mode', 'bm_relay.protocol', 'bm_relay.queue_size', 'bm_relay.secret',
            'bm_relay.secret_file', 'bm_relay.site', 'bm_relay.timeout_ms', 'bm_relay.url'], array_keys($ini));
        $defaults = ['mode' => 'async', 'timeout_ms' => '2000', 'connect_timeout_ms' => '500', 'queue_size' => '10000', 'flush_timeout_ms' => '500', 'protocol' => '1'];
        foreach ($defaults as $k => $v) {
            $this->assertSame($v, $ini["bm_relay.$k"]['global_value'], $k);
            $this->assertSame(INI_SYSTEM, $ini["bm_relay.$k"]['access'], $k);
        }
        $this->assertFalse(ini_set('bm_relay.mode', 'sync'), 'per-request changes go through bm_configure()');
    }

    public function test_phpinfo_shows_the_configuration_but_never_the_secret(): void
    {
        $secret = BM_Test::new_secret();
        [$code, $out] = $this->php(['bm_relay.url' => 'http://127.0.0.1:9', 'bm_relay.site' => 'info.example', 'bm_relay.secret' => $secret, 'bm_relay.mode' => 'sync'], 'phpinfo(INFO_MODULES);');
        $this->assertSame(0, $code);
        $this->assertStringContainsString('bm_relay support => enabled', $out);
        $this->assertMatchesRegularExpression('/^version => \d+\.\d+\.\d+/m', $out);
        $this->assertStringContainsString('mode => sync', $out);
        $this->assertStringContainsString('relay URL => http://127.0.0.1:9', $out);
        $this->assertStringContainsString('site => info.example', $out);
        $this->assertStringContainsString('site secret => configured (bm_relay.secret)', $out);
        $this->assertStringContainsString('queued / sent / failed / dropped => 0 / 0 / 0 / 0', $out);
        $this->assertStringNotContainsString($secret, $out, 'the secret is never shown, not even as an INI value');
        $this->assertStringContainsString('bm_relay.secret => <redacted>', $out);
    }

    public function test_ini_settings_drive_the_api_and_bad_ini_values_are_named(): void
    {
        $v = BM_Test::vectors()['sites'][0];
        [$code, $out, $err] = $this->php(['bm_relay.site' => $v['site'], 'bm_relay.secret' => $v['secret']], 'echo bm_relay_key();');
        $this->assertSame(0, $code, $err);
        $this->assertSame($v['relay_key'], $out);
        [, $out] = $this->php(['bm_relay.timeout_ms' => 'soon'], 'try { bm_relay_key(); } catch (BmRelayException $e) { echo $e->getMessage(); }');
        $this->assertSame('bm_relay_key(): bm_relay.timeout_ms must be an integer number of milliseconds 1..=600000', $out);
    }

    public function test_overrides_last_one_request_only(): void
    {
        $a = BM_Test::new_secret();
        $b = BM_Test::new_secret();
        bm_configure(['site' => 's.example', 'secret' => $a]);
        $ka = bm_relay_key();
        bm_configure(['secret' => $b]);
        $this->assertNotSame($ka, bm_relay_key());
        // A secret_file override replaces an inline secret, and the reverse.
        $file = tempnam(sys_get_temp_dir(), 'bm');
        file_put_contents($file, $a);
        bm_configure(['secret_file' => $file]);
        $this->assertSame($ka, bm_relay_key());
        unlink($file);
        bm_configure(['secret' => $b]);
        $this->assertNotSame($ka, bm_relay_key());
    }

    public function test_the_checked_in_stubs_declare_exactly_the_extension(): void
    {
        $stub = (string) file_get_contents(BM_Test::root() . '/ext/bm_relay.stub.php');
        preg_match_all('/^function (bm_\w+)\(/m', $stub, $m);
        $declared = $m[1];
        sort($declared);
        $want = self::FUNCTIONS;
        sort($want);
        $this->assertSame($want, $declared);
        $this->assertStringContainsString('class BmRelayException extends \RuntimeException', $stub);
        foreach ((new ReflectionExtension('bm_relay'))->getFunctions() as $name => $f) {
            preg_match('/^function ' . $name . '\(([^)]*)\)/m', $stub, $sig);
            preg_match_all('/\$(\w+)/', $sig[1], $params);
            $this->assertSame(array_map(fn($p) => $p->getName(), $f->getParameters()), $params[1], "parameters of $name");
        }
    }
}
