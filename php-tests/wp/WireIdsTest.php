<?php
/**
 * Protocol 2 in the plugin (docs/PROTOCOL.md §3.2): a new site speaks it,
 * an upgraded one keeps protocol 1 until its admin switches; the relay is
 * told pseudonyms only, and the browser is given the pairs it needs to map
 * them back (its own, its threads', their members').
 */

final class WireIdsTest extends BM_WP_TestCase
{
    protected function tearDown(): void
    {
        update_option(BM_Relay_Ids::OPTION, '2');
        BM_Relay_Settings::apply();
        parent::tearDown();
    }

    public function test_a_new_site_speaks_protocol_2_and_an_upgraded_one_keeps_1(): void
    {
        $this->assertSame('2', get_option(BM_Relay_Ids::OPTION), 'activation on a new site records 2');
        $this->assertSame(2, BM_Relay_Ids::protocol());
        $this->assertSame(2, $this->token_claims(bm_client_token(1, 60))['v'] ?? null, 'and hands it to the PHP API (v2 tokens)');

        // A site that ran schema 4 (a release that spoke protocol 1 only).
        delete_option(BM_Relay_Ids::OPTION);
        update_option(BM_Relay_Schema::OPTION, 4);
        BM_Relay_Schema::maybe_upgrade();
        $this->assertSame('1', get_option(BM_Relay_Ids::OPTION), 'the upgrade keeps the protocol the site spoke');
        $this->assertSame((string) BM_Relay_Schema::VERSION, (string) get_option(BM_Relay_Schema::OPTION));
        BM_Relay_Settings::apply();
        $this->assertArrayNotHasKey('v', $this->token_claims(bm_client_token(1, 60)), 'protocol 1 tokens as before');
        $this->assertSame($this->uid('alice'), BM_Relay_Ids::user($this->uid('alice')), 'protocol 1: an id is its own wire id');
    }

    public function test_the_token_bundle_and_thread_shapes_name_pseudonyms(): void
    {
        $t = $this->thread('alice', ['bob']);
        $alice = $this->uid('alice');
        $bob = $this->uid('bob');
        $b = $this->ok($this->rest('POST', '/token', 'alice'));
        $wire = bm_pseudonym('user', $alice);
        $this->assertNotSame($alice, $wire);
        $this->assertSame($wire, $b['wire'], 'the page learns what the relay calls it');
        $this->assertSame("u/$wire", $b['user_key']['kid']);
        $this->assertSame($wire, $this->token_sub($b['token']), 'the connection token names the pseudonym');
        $k = array_values(array_filter($b['threads'], static fn($x) => $x['thread'] === $t['id']))[0];
        $tw = bm_pseudonym('thread', $t['id']);
        $this->assertSame($tw, $k['wire']);
        $this->assertSame("t/$tw/0", $k['kid']);
        $this->assertSame((string) $tw, (string) $this->token_claims($k['token'])['thread'], 'the thread token names the thread pseudonym');
        $shape = $this->ok($this->rest('GET', "/threads/{$t['id']}", 'alice'))['thread'];
        $wires = array_column($shape['participants'], 'wire', 'id');
        $this->assertSame([$alice => $wire, $bob => bm_pseudonym('user', $bob)], $wires, 'members come with their pseudonyms');
    }

    public function test_a_message_reaches_a_subscriber_under_pseudonyms_only(): void
    {
        $t = $this->thread('alice', ['bob']);
        $bob = $this->sub('bob', [$t['id']]);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'hello']), 201);
        $ev = $bob->expect('message.new');
        $this->assertSame('hello', $ev['payload']['data']['text'], 'opened with the key of the pseudonymous key id');
        $this->assertSame($t['id'], $ev['payload']['data']['thread'], 'inside the seal, WordPress ids');
        $this->assertSame('t/' . bm_pseudonym('thread', $t['id']) . '/0', $ev['k']);
        $this->assertStringNotContainsString('/' . $t['id'] . '/', $ev['k']);
    }

    public function test_protocol_1_still_works_end_to_end(): void
    {
        update_option(BM_Relay_Ids::OPTION, '1');
        BM_Relay_Settings::apply();
        $t = $this->thread('alice', ['bob']);
        $b = $this->ok($this->rest('POST', '/token', 'bob'));
        $this->assertSame($this->uid('bob'), $b['wire']);
        $this->assertSame('u/' . $this->uid('bob'), $b['user_key']['kid']);
        $bob = $this->sub('bob', [$t['id']]);
        $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'v1']), 201);
        $ev = $bob->expect('message.new');
        $this->assertSame("t/{$t['id']}/0", $ev['k']);
        $this->assertSame('v1', $ev['payload']['data']['text']);
    }

    /** @return array<string,mixed> a token's claims (not verified: the relay does that) */
    private function token_claims(string $jwt): array
    {
        $parts = explode('.', $jwt);
        return json_decode((string) base64_decode(strtr($parts[1], '-_', '+/')), true, 8, JSON_THROW_ON_ERROR);
    }

    private function token_sub(string $jwt): int
    {
        return (int) $this->token_claims($jwt)['sub'];
    }
}
