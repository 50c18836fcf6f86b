<?php
/**
 * The bm_relay PHP API against testdata/crypto-v1.json (made outside the
 * project) and its input rules, whichever implementation is loaded.
 */

use PHPUnit\Framework\TestCase;

final class ApiVectorsTest extends TestCase
{
    private static array $v;

    public static function setUpBeforeClass(): void
    {
        self::$v = json_decode((string) file_get_contents(dirname(__DIR__, 3) . '/testdata/crypto-v1.json'), true, 512, JSON_THROW_ON_ERROR);
    }

    private static function b64d(string $s): string
    {
        return (string) base64_decode(strtr($s, '-_', '+/'));
    }

    public function test_key_derivations_match_every_site_vector(): void
    {
        foreach (self::$v['sites'] as $s) {
            bm_configure(['site' => $s['site'], 'secret' => $s['secret']]);
            $this->assertSame($s['relay_key'], bm_relay_key(), $s['site']);
            foreach ($s['thread_keys'] as $t) {
                $this->assertSame($t['key'], bm_thread_key($t['thread'], $t['epoch']), $t['kid']);
            }
            foreach ($s['user_keys'] as $u) {
                $this->assertSame($u['key'], bm_user_key($u['user']), $u['kid']);
            }
        }
    }

    /** testdata/multisite-v1.json: blog secrets of a network (PROTOCOL.md §3.1) and their keys. */
    public function test_multisite_blog_secrets_and_keys_match_the_vectors(): void
    {
        $m = json_decode((string) file_get_contents(dirname(__DIR__, 3) . '/testdata/multisite-v1.json'), true, 512, JSON_THROW_ON_ERROR);
        $n = 0;
        foreach ($m['networks'] as $net) {
            foreach ($net['blogs'] as $b) {
                $blog = rtrim(strtr(base64_encode(hash_hkdf('sha256', self::b64d($net['network_secret']), 32, $b['info'], $m['salt'])), '+/', '-_'), '=');
                $this->assertSame($b['blog_secret'], $blog, "blog {$b['blog']}");
                bm_configure(['site' => 'example.com', 'secret' => $blog]);
                $this->assertSame($b['relay_key'], bm_relay_key());
                $this->assertSame($b['thread_key']['key'], bm_thread_key(1, 0));
                $this->assertSame($b['user_key']['key'], bm_user_key(1));
                $n++;
            }
        }
        $this->assertSame(12, $n);
    }

    public function test_every_vector_envelope_opens_and_must_fail_ones_are_refused(): void
    {
        $opened = 0;
        foreach (self::$v['envelopes'] as $e) {
            bm_configure(['site' => $e['site'], 'secret' => $e['secret']]);
            $json = json_encode($e['envelope'], JSON_UNESCAPED_SLASHES);
            if (!empty($e['must_fail'])) {
                try {
                    bm_open($json);
                    $this->fail('opened a must_fail envelope: ' . $json);
                } catch (BmRelayException $x) {
                    $this->assertStringStartsWith('bm_open(): envelope', $x->getMessage());
                }
                continue;
            }
            $p = bm_open($json);
            $this->assertSame($e['plaintext'], json_encode(['type' => $p['type'], 'data' => $p['data']], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
            $this->assertSame($e['envelope']['id'], $p['id']);
            $this->assertSame($e['envelope']['k'], $p['k']);
            $opened++;
        }
        $this->assertSame(12, $opened);
    }

    public function test_sealed_envelopes_have_the_wire_layout_and_open_with_the_vector_plaintext(): void
    {
        foreach (self::$v['envelopes'] as $e) {
            if (!empty($e['must_fail'])) {
                continue;
            }
            bm_configure(['site' => $e['site'], 'secret' => $e['secret']]);
            $pl = json_decode($e['plaintext'], true);
            $k = $e['envelope']['k'];
            $event = ['type' => $pl['type'], 'data' => $pl['data'], 'id' => $e['envelope']['id']];
            $event += $k[0] === 't' ? ['thread' => 12, 'to' => [1]] : ['to' => [2]];
            $sealed = bm_seal($event);
            $this->assertMatchesRegularExpression('/^\{"v":1,"id":"[A-Za-z0-9_-]+","k":"[tu\/0-9]+","n":"[A-Za-z0-9_-]{16}","c":"[A-Za-z0-9_-]+"\}$/', $sealed);
            $d = json_decode($sealed, true);
            $this->assertSame($k, $d['k']);
            $this->assertSame(strlen($e['envelope']['c']), strlen($d['c']), 'same plaintext bytes → same ciphertext length');
            $this->assertNotSame($e['envelope']['n'], $d['n'], 'a fresh nonce per envelope');
            $p = bm_open($sealed);
            $this->assertSame($e['plaintext'], json_encode(['type' => $p['type'], 'data' => $p['data']], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE));
            // Tampering with the id or the key id breaks the AAD.
            foreach ([['id', 'other'], ['k', $k[0] === 't' ? 't/13/0' : 'u/3']] as [$field, $value]) {
                $bad = $d;
                $bad[$field] = $value;
                try {
                    bm_open(json_encode($bad, JSON_UNESCAPED_SLASHES));
                    $this->fail("opened with a changed $field");
                } catch (BmRelayException $x) {
                    $this->assertStringContainsString('does not open', $x->getMessage());
                }
            }
        }
    }

    public function test_tokens_are_byte_identical_to_the_vectors_for_the_same_claims(): void
    {
        foreach (self::$v['tokens'] as $t) {
            bm_configure(['site' => $t['site'], 'secret' => $this->secret_of($t['site'])]);
            $tok = isset($t['claims']['thread']) ? bm_thread_token(2, 12, 3600) : bm_client_token(2, 3600);
            [$h, $b, $sig] = explode('.', $tok);
            [$vh, $vb] = explode('.', $t['token']);
            $this->assertSame($vh, $h, 'header {"alg":"HS256","typ":"JWT"}');
            // The implementation stamps iat with its clock, the vector has
            // 1764000000: the only bytes allowed to differ are those two
            // numbers. Take the vector's own body bytes, put the token's iat
            // (checked against our clock) and iat + ttl in, and the
            // implementation's body and signature must be exactly that.
            $iat = json_decode(self::b64d($b), true)['iat'] ?? null;
            $this->assertIsInt($iat);
            $this->assertEqualsWithDelta(time(), $iat, 5);
            $vector_body = self::b64d($vb);
            $this->assertSame(1, substr_count($vector_body, '"iat":1764000000,"exp":1764003600}'), $vector_body);
            $expect_body = str_replace('"iat":1764000000,"exp":1764003600}', sprintf('"iat":%d,"exp":%d}', $iat, $iat + 3600), $vector_body);
            $this->assertSame($expect_body, self::b64d($b), 'claim bytes (site, sub, thread, their order and encoding)');
            $this->assertSame(self::b64u($expect_body), $b, 'base64url without padding');
            $this->assertSame(self::b64u(hash_hmac('sha256', "$vh.$b", self::b64d($t['relay_key']), true)), $sig, 'signed with the vector relay key');
        }
    }

    private static function b64u(string $raw): string
    {
        return rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
    }

    private function secret_of(string $site): string
    {
        foreach (self::$v['sites'] as $s) {
            if ($s['site'] === $site) {
                return $s['secret'];
            }
        }
        $this->fail("no secret for $site");
    }

    /** @return iterable<string,array{0:callable,1:string}> */
    public function bad_input(): iterable
    {
        yield 'unknown setting' => [fn() => bm_configure(['nope' => 1]), "bm_configure(): unknown setting 'nope'"];
        yield 'bad site' => [fn() => bm_configure(['site' => 'Bad Site']), 'bm_configure(): bm_relay.site'];
        yield 'bad url' => [fn() => bm_configure(['url' => 'ftp://x']), 'bm_configure(): bm_relay.url must start with http:// or https://'];
        yield 'bad mode' => [fn() => bm_configure(['mode' => 'fast']), "bm_configure(): bm_relay.mode must be 'async' or 'sync'"];
        yield 'bad secret' => [fn() => bm_configure(['secret' => 'short']), 'bm_configure(): bm_relay.secret is not a site secret'];
        yield 'missing secret file' => [fn() => bm_configure(['secret_file' => '/nonexistent/bm']), "bm_configure(): bm_relay.secret_file: cannot read '/nonexistent/bm'"];
        yield 'thread 0' => [fn() => bm_thread_key(0), 'bm_thread_key(): thread_id must be an integer 1..9007199254740991, got 0'];
        yield 'thread float' => [fn() => bm_thread_key(1.5), 'bm_thread_key(): thread_id must be an integer 1..9007199254740991, got float'];
        yield 'thread 2^53' => [fn() => bm_thread_key(9007199254740992), 'got 9007199254740992'];
        yield 'epoch' => [fn() => bm_thread_key(1, 4294967296), 'bm_thread_key(): epoch must be an integer 0..4294967295'];
        yield 'ttl' => [fn() => bm_client_token(1, 0), 'bm_client_token(): ttl must be an integer number of seconds'];
        yield 'no type' => [fn() => bm_seal(['to' => [1]]), "bm_seal(): 'type' is required"];
        yield 'unknown key' => [fn() => bm_seal(['type' => 'x', 'too' => [1]]), "bm_seal(): event has an unknown key 'too'"];
        yield 'to not ids' => [fn() => bm_seal(['type' => 'x', 'to' => [1, 'a']]), "bm_seal(): 'to'[1] must be an integer"];
        yield 'user key needs one' => [fn() => bm_seal(['type' => 'x', 'to' => [1, 2]]), "'to' must hold exactly one user id"];
        yield 'live without thread' => [fn() => bm_seal(['type' => 'x', 'to' => [1], 'live' => true]), "'live' needs 'thread'"];
        yield 'nobody' => [fn() => bm_seal(['type' => 'x', 'thread' => 4]), 'the event would reach nobody'];
        yield 'bad id' => [fn() => bm_seal(['type' => 'x', 'to' => [1], 'id' => 'a b']), "bm_seal(): 'id': event id is malformed"];
        yield 'not utf8' => [fn() => bm_seal(['type' => 'x', 'to' => [1], 'data' => "\xff"]), "bm_seal(): 'data' is not JSON-encodable"];
        yield 'too large' => [fn() => bm_seal(['type' => 'x', 'to' => [1], 'data' => str_repeat('a', 65536)]), "bm_seal(): 'data' is too large"];
        yield 'many: names the event' => [fn() => bm_push_many([['type' => 'x', 'to' => [1]], ['to' => [1]]]), "bm_push_many(): events[1]['type'] is required"];
        yield 'open garbage' => [fn() => bm_open('{"v":1}'), 'bm_open(): envelope'];
    }

    /** @dataProvider bad_input */
    public function test_bad_input_throws_BmRelayException_naming_the_field(callable $call, string $message): void
    {
        bm_configure(['site' => 'example.com', 'secret' => self::$v['sites'][0]['secret'], 'url' => 'http://127.0.0.1:9', 'mode' => 'sync']);
        try {
            $call();
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertInstanceOf(RuntimeException::class, $e);
            $this->assertStringContainsString($message, $e->getMessage());
            $this->assertStringNotContainsString(self::$v['sites'][0]['secret'], $e->getMessage());
            $this->assertSame(0, $e->getCode(), 'input errors have code 0');
        }
    }

    public function test_ids_from_wpdb_strings_are_accepted_like_ints(): void
    {
        bm_configure(['site' => 'example.com', 'secret' => self::$v['sites'][0]['secret']]);
        $this->assertSame(bm_thread_key(12, 3), bm_thread_key('12', '3'));
        $this->expectException(BmRelayException::class);
        bm_thread_key('012');
    }

    public function test_relay_down_in_sync_mode_is_a_bounded_relay_error_counted_in_stats(): void
    {
        $port = $this->closed_port();
        bm_configure(['site' => 'example.com', 'secret' => self::$v['sites'][0]['secret'], 'url' => "http://127.0.0.1:$port", 'mode' => 'sync', 'connect_timeout_ms' => 300]);
        $before = bm_stats()['failed'];
        $t0 = microtime(true);
        try {
            bm_push(['type' => 'x', 'to' => [1]]);
            $this->fail('no exception');
        } catch (BmRelayException $e) {
            $this->assertStringContainsString('bm_push(): relay unreachable for push', $e->getMessage());
        }
        $this->assertLessThan(2.0, microtime(true) - $t0);
        $stats = bm_stats();
        $this->assertSame($before + 1, $stats['failed']);
        $this->assertStringContainsString('relay unreachable', $stats['last_error']['message']);
        $this->assertSame(['queued', 'sent', 'failed', 'dropped', 'batches', 'last_error', 'latency_p50_us', 'latency_p99_us', 'relay_p50_us', 'relay_p99_us', 'url', 'relays', 'site', 'mode', 'pid'], array_keys($stats));
        bm_configure(['mode' => 'async']);
        $this->assertTrue(bm_push(['type' => 'x', 'to' => [1]]), 'async: queued');
        $this->assertTrue(bm_flush(500));
        $this->assertSame(0, bm_stats()['queued']);
    }

    private function closed_port(): int
    {
        $s = stream_socket_server('tcp://127.0.0.1:0');
        $name = (string) stream_socket_get_name($s, false);
        fclose($s);
        return (int) substr((string) strrchr($name, ':'), 1);
    }
}
