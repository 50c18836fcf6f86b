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
        bm_configure(['site' => $s['site'], 'secret' => $s['site_secret']]);
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
