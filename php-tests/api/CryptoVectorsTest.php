<?php
/**
 * Every vector of testdata/crypto-v1.json (made by an implementation
 * outside the project) through the PHP API: key derivations, opening every
 * envelope and refusing the must_fail ones, tokens byte for byte.
 */

use PHPUnit\Framework\TestCase;

final class CryptoVectorsTest extends TestCase
{
    private static function b64u_decode(string $s): string
    {
        return (string) base64_decode(strtr($s, '-_', '+/'), true);
    }

    private static function b64u(string $bytes): string
    {
        return rtrim(strtr(base64_encode($bytes), '+/', '-_'), '=');
    }

    private static function secret_of(string $site): string
    {
        foreach (BM_Test::vectors()['sites'] as $s) {
            if ($s['site'] === $site) {
                return $s['secret'];
            }
        }
        throw new LogicException("no vector secret for $site");
    }

    public function sites(): iterable
    {
        foreach (BM_Test::vectors()['sites'] as $s) {
            yield $s['site'] => [$s];
        }
    }

    /** @dataProvider sites */
    public function test_relay_thread_and_user_keys_match_the_vectors(array $s): void
    {
        bm_configure(['site' => $s['site'], 'secret' => $s['secret']]);
        $this->assertSame($s['relay_key'], bm_relay_key());
        foreach ($s['thread_keys'] as $t) {
            $this->assertSame($t['key'], bm_thread_key($t['thread'], $t['epoch']), $t['kid']);
        }
        foreach ($s['user_keys'] as $u) {
            $this->assertSame($u['key'], bm_user_key($u['user']), $u['kid']);
        }
        // Epoch 0 is the default.
        $this->assertSame(bm_thread_key(12, 0), bm_thread_key(12));
    }

    /** @dataProvider sites */
    public function test_the_secret_can_come_from_a_file(array $s): void
    {
        $file = tempnam(sys_get_temp_dir(), 'bm-secret');
        file_put_contents($file, $s['secret'] . "\n");
        try {
            bm_configure(['site' => $s['site'], 'secret_file' => $file]);
            $this->assertSame($s['relay_key'], bm_relay_key());
        } finally {
            unlink($file);
        }
    }

    public function envelopes(): iterable
    {
        foreach (BM_Test::vectors()['envelopes'] as $i => $e) {
            yield "#$i {$e['site']} {$e['envelope']['k']}" . (empty($e['must_fail']) ? '' : ' must_fail') => [$e];
        }
    }

    /** @dataProvider envelopes */
    public function test_every_vector_envelope_opens_or_is_refused(array $e): void
    {
        bm_configure(['site' => $e['site'], 'secret' => $e['secret']]);
        $json = json_encode($e['envelope'], JSON_UNESCAPED_SLASHES);
        if (!empty($e['must_fail'])) {
            try {
                bm_open($json);
                $this->fail('a must_fail envelope opened');
            } catch (BmRelayException $x) {
                $this->assertStringContainsString('bm_open(): envelope', $x->getMessage());
                $this->assertSame(0, $x->getCode());
            }
            return;
        }
        $opened = bm_open($json);
        $plain = json_decode($e['plaintext'], true);
        $this->assertSame($plain['type'], $opened['type']);
        $this->assertSame($plain['data'], $opened['data']);
        $this->assertSame($e['envelope']['id'], $opened['id']);
        $this->assertSame($e['envelope']['k'], $opened['k']);
        // The same envelope under another site's AAD does not open.
        bm_configure(['site' => 'other.example']);
        $this->expectException(BmRelayException::class);
        $this->expectExceptionMessage('does not open');
        bm_open($json);
    }

    public function tokens(): iterable
    {
        foreach (BM_Test::vectors()['tokens'] as $i => $t) {
            yield "#$i {$t['site']}" . (isset($t['claims']['thread']) ? ' thread' : ' connection') => [$t];
        }
    }

    /** @dataProvider tokens */
    public function test_tokens_are_the_vector_bytes_for_the_same_claims(array $t): void
    {
        bm_configure(['site' => $t['site'], 'secret' => self::secret_of($t['site'])]);
        $c = $t['claims'];
        $ttl = $c['exp'] - $c['iat'];
        $before = time();
        $token = isset($c['thread']) ? bm_thread_token((int) $c['sub'], $c['thread'], $ttl) : bm_client_token((int) $c['sub'], $ttl);
        [$h, $body, $sig] = explode('.', $token);
        $claims = json_decode(self::b64u_decode($body), true);
        $this->assertGreaterThanOrEqual($before, $claims['iat']);
        $this->assertLessThanOrEqual(time(), $claims['iat']);
        // Put the vector's times into the claims we got: the token must then be the vector, byte for byte.
        $same = $claims;
        $same['iat'] = $c['iat'];
        $same['exp'] = $c['exp'];
        $this->assertSame($c, $same, 'claims and their order');
        $vbody = self::b64u(json_encode($same, JSON_UNESCAPED_SLASHES));
        $vsig = self::b64u(hash_hmac('sha256', "$h.$vbody", self::b64u_decode(bm_relay_key()), true));
        $this->assertSame($t['token'], "$h.$vbody.$vsig");
        // And our own token is signed with the vector's relay key.
        $this->assertSame(self::b64u(hash_hmac('sha256', "$h.$body", self::b64u_decode($t['relay_key']), true)), $sig);
    }

    public function test_sealed_events_open_and_tampering_is_detected(): void
    {
        $s = BM_Test::vectors()['sites'][0];
        bm_configure(['site' => $s['site'], 'secret' => $s['secret']]);
        $data = ['text' => "héllo / \u{1F600}", 'n' => 1.5, 'list' => [1, 2], 'empty' => [], 'nested' => ['a' => null]];
        foreach ([['thread' => 12, 'epoch' => 3, 'to' => [1, 2]], ['to' => [424242]]] as $route) {
            $env = bm_seal(['type' => 'message.new', 'data' => $data] + $route);
            $this->assertMatchesRegularExpression('/^\{"v":1,"id":"[A-Za-z0-9_-]{22}","k":"(t\/12\/3|u\/424242)","n":"[A-Za-z0-9_-]{16}","c":"[A-Za-z0-9_-]+"\}$/', $env);
            $opened = bm_open($env);
            $this->assertSame('message.new', $opened['type']);
            $this->assertSame($data, $opened['data']);
            // The plaintext is json_encode's, slashes and unicode unescaped:
            // the ciphertext is exactly as long as that text plus the tag.
            $plain = json_encode(['type' => 'message.new', 'data' => $data], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
            $this->assertSame(strlen($plain) + 16, strlen(self::b64u_decode(json_decode($env, true)['c'])));
            $d = json_decode($env, true);
            $c = self::b64u_decode($d['c']);
            $c[0] = chr(ord($c[0]) ^ 1);
            foreach (['c' => self::b64u($c), 'id' => 'other-id', 'n' => self::b64u(random_bytes(12))] as $field => $value) {
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
        // Caller-chosen ids are kept; fresh nonces every time.
        $a = json_decode(bm_seal(['type' => 't', 'to' => [1], 'id' => 'my_id-1']), true);
        $b = json_decode(bm_seal(['type' => 't', 'to' => [1], 'id' => 'my_id-1']), true);
        $this->assertSame('my_id-1', $a['id']);
        $this->assertNotSame($a['n'], $b['n']);
    }
}
