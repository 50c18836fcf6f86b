<?php
/**
 * bm_pseudonym(): every pseudonym of testdata/pseudonyms-v2.json (made by
 * scripts/gen-pseudonym-vectors.py, independent of the code under test),
 * and the keys of the pseudonymous key ids (PROTOCOL.md §3.2), through the
 * PHP API — the same suite runs on the extension and on the fallback.
 */

use PHPUnit\Framework\TestCase;

final class PseudonymVectorsTest extends TestCase
{
    public function sites(): iterable
    {
        $path = dirname(__DIR__, 2) . '/testdata/pseudonyms-v2.json';
        foreach (json_decode((string) file_get_contents($path), true, 512, JSON_THROW_ON_ERROR)['sites'] as $s) {
            yield $s['name'] => [$s];
        }
    }

    /** @dataProvider sites */
    public function test_pseudonyms_and_their_keys_match_the_vectors(array $s): void
    {
        bm_configure(['site' => $s['site'], 'secret' => $s['site_secret'], 'protocol' => 1]);
        foreach ($s['users'] as $u) {
            $p = bm_pseudonym('user', $u['user']);
            $this->assertSame($u['pseudonym'], $p, "user {$u['user']}");
            $this->assertSame($u['key'], bm_user_key($p), $u['kid']);
        }
        foreach ($s['threads'] as $t) {
            $p = bm_pseudonym('thread', $t['thread']);
            $this->assertSame($t['pseudonym'], $p, "thread {$t['thread']}");
            $this->assertSame($t['key'], bm_thread_key($p, $t['epoch']), $t['kid']);
        }
    }

    /**
     * With protocol 2 the API maps WordPress ids itself: keys of the
     * vectors' users and threads, tokens byte for byte (the vector's
     * iat/exp put into the claims we got, as CryptoVectorsTest does), and
     * the vectors' envelopes open.
     *
     * @dataProvider sites
     */
    public function test_protocol_2_keys_tokens_and_envelopes_match_the_vectors(array $s): void
    {
        bm_configure(['site' => $s['site'], 'secret' => $s['site_secret'], 'protocol' => 2]);
        foreach ($s['users'] as $u) {
            $this->assertSame($u['key'], bm_user_key($u['user']), $u['kid']);
        }
        foreach ($s['threads'] as $t) {
            $this->assertSame($t['key'], bm_thread_key($t['thread'], $t['epoch']), $t['kid']);
        }
        $b64u = fn(string $raw): string => rtrim(strtr(base64_encode($raw), '+/', '-_'), '=');
        $relay_key = (string) base64_decode(strtr($s['relay_key'], '-_', '+/'));
        foreach ($s['tokens'] as $t) {
            $before = time();
            $token = $t['thread'] === null ? bm_client_token($t['user'], $t['ttl']) : bm_thread_token($t['user'], $t['thread'], $t['ttl']);
            [$h, $body] = explode('.', $token);
            $claims = json_decode((string) base64_decode(strtr($body, '-_', '+/')), true);
            $this->assertGreaterThanOrEqual($before, $claims['iat']);
            $claims['iat'] = $t['claims']['iat'];
            $claims['exp'] = $t['claims']['exp'];
            $this->assertSame($t['claims'], $claims, 'claims, pseudonyms and their order');
            $vbody = $b64u(json_encode($claims, JSON_UNESCAPED_SLASHES));
            $this->assertSame($t['token'], "$h.$vbody." . $b64u(hash_hmac('sha256', "$h.$vbody", $relay_key, true)));
        }
        foreach ($s['envelopes'] as $e) {
            $opened = bm_open(json_encode($e['envelope'], JSON_UNESCAPED_SLASHES));
            $this->assertSame($e['envelope']['k'], $opened['k'], 'k as on the wire');
            $this->assertSame(json_decode($e['plaintext'], true)['data'], $opened['data']);
        }
        // Protocol 1 is untouched: the WordPress id's own key.
        bm_configure(['protocol' => 1]);
        $this->assertNotSame($s['users'][0]['key'], bm_user_key($s['users'][0]['user']));
    }

    public function test_bad_input_is_refused_with_a_clear_message(): void
    {
        bm_configure(['site' => 'example.com', 'secret' => str_repeat('A', 43)]);
        foreach ([['group', 1, 'kind'], ['user', 0, 'id'], ['thread', -5, 'id'], ['user', 9007199254740992, 'id']] as [$kind, $id, $what]) {
            try {
                bm_pseudonym($kind, $id);
                $this->fail("bm_pseudonym('$kind', $id) was accepted");
            } catch (BmRelayException $e) {
                $this->assertStringStartsWith('bm_pseudonym(): ', $e->getMessage());
                $this->assertStringContainsString($what, $e->getMessage());
            }
        }
        $this->assertNotSame(bm_pseudonym('user', 7), bm_pseudonym('thread', 7), 'kinds differ');
    }
}
