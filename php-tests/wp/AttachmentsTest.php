<?php
/**
 * Attachments (issue #16): a member uploads a file over real HTTP
 * (multipart, cookie login and nonce) into uploads/bm-relay/ under a random
 * name, the site's size and type limits answer with clear 4xx errors, a
 * message carries the uploader's own unsent uploads, the sealed event holds
 * only the reference, the gated route serves the file to members only, and
 * deleting the message, the eraser and retention delete the file.
 */

final class AttachmentsTest extends BM_WP_TestCase
{
    /** @var array<string,BM_WP_HttpSession> logged-in sessions by user */
    private static array $sessions = [];

    private function session(string $user): BM_WP_HttpSession
    {
        return self::$sessions[$user] ??= $this->h()->login($user);
    }

    /** A PNG of w × h pixels in a temp file. */
    private function png(int $w = 640, int $h = 480): string
    {
        $img = imagecreatetruecolor($w, $h);
        imagefilledrectangle($img, 0, 0, $w, $h, imagecolorallocate($img, 30, 120, 200));
        imagefilledellipse($img, intdiv($w, 2), intdiv($h, 2), intdiv($w, 2), intdiv($h, 2), imagecolorallocate($img, 250, 200, 40));
        $path = tempnam(sys_get_temp_dir(), 'bmr') . '.png';
        imagepng($img, $path);
        imagedestroy($img);
        return $path;
    }

    /** A text file in a temp file. */
    private function text_file(string $body): string
    {
        $path = tempnam(sys_get_temp_dir(), 'bmr') . '.txt';
        file_put_contents($path, $body);
        return $path;
    }

    /**
     * Uploads a file over HTTP as $user; returns status and decoded body.
     *
     * @return array{0:int,1:mixed}
     */
    private function upload_http(string $user, int $thread, string $path, string $name, string $type, bool $nonce = true): array
    {
        $s = $this->session($user);
        $headers = $nonce ? ['X-WP-Nonce: ' . $s->nonce()] : [];
        $ch = $s->curl('POST', "/wp-json/bm/v1/threads/$thread/attachments", null, $headers);
        curl_setopt($ch, CURLOPT_POSTFIELDS, ['file' => new CURLFile($path, $type, $name)]);
        $out = (string) curl_exec($ch);
        $code = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
        curl_close($ch);
        return [$code, json_decode($out, true)];
    }

    /**
     * The upload route in this process with a file as PHP would hand it
     * (the checks before the move: membership, size, type).
     *
     * @return array{0:int,1:mixed}
     */
    private function upload_here(?string $user, int $thread, ?array $file): array
    {
        BM_Relay_Push::reset_request();
        wp_set_current_user($user === null ? 0 : $this->uid($user));
        $req = new WP_REST_Request('POST', "/bm/v1/threads/$thread/attachments");
        $req->set_header('X-WP-Nonce', wp_create_nonce('wp_rest'));
        $req->set_file_params($file === null ? [] : ['file' => $file]);
        $res = rest_do_request($req);
        return [$res->get_status(), json_decode((string) wp_json_encode(rest_get_server()->response_to_data($res, false)), true)];
    }

    /** A GET of the gated route over HTTP as $user: status, headers, body. */
    private function fetch_http(string $user, string $url): array
    {
        $s = $this->session($user);
        $path = substr($url, strlen($this->h()->url));
        return $s->request('GET', $path . (strpos($path, '?') === false ? '?' : '&') . '_wpnonce=' . $s->nonce());
    }

    /** Path on disk of an attachment. */
    private function file_of(int $id): string
    {
        return (string) get_attached_file($id, true);
    }

    public function test_a_member_uploads_an_image_and_a_file_sends_them_and_the_event_carries_only_references(): void
    {
        $t = $this->thread('alice', ['bob']);
        $png = $this->png();
        $txt = $this->text_file(str_repeat("meeting notes\n", 2000));

        $img = $this->ok($this->upload_http('alice', $t['id'], $png, 'holiday photo.png', 'image/png'), 201)['attachment'];
        $this->assertSame(['id', 'name', 'size', 'type', 'url', 'thumb', 'width', 'height'], array_keys($img));
        $this->assertSame(['holiday-photo.png', filesize($png), 'image/png', 640, 480], [$img['name'], $img['size'], $img['type'], $img['width'], $img['height']]);
        $doc = $this->ok($this->upload_http('alice', $t['id'], $txt, 'notes.txt', 'text/plain'), 201)['attachment'];
        $this->assertSame(['notes.txt', 'text/plain', null], [$doc['name'], $doc['type'], $doc['thumb']]);

        // On disk: uploads/bm-relay/<random>/<random>.png, its thumbnail
        // beside it, the deny files in the folder; the given name nowhere.
        $file = $this->file_of($img['id']);
        $base = BM_Relay_Attachments::base_dir();
        $this->assertMatchesRegularExpression('#^' . preg_quote($base, '#') . '/[0-9a-f]{24}/[0-9a-f]{32}\.png$#D', $file);
        $this->assertSame(file_get_contents($png), file_get_contents($file), 'the bytes sent');
        $this->assertFileExists($base . '/.htaccess');
        $this->assertStringContainsString('Require all denied', (string) file_get_contents($base . '/.htaccess'));
        $this->assertFileExists($base . '/index.php');
        $meta = wp_get_attachment_metadata($img['id']);
        $this->assertSame(['medium'], array_keys($meta['sizes']), 'one thumbnail size made');
        $post = get_post($img['id']);
        $this->assertSame(['private', $this->uid('alice'), $t['id'], 0], [$post->post_status, (int) $post->post_author, (int) get_post_meta($img['id'], '_bmr_thread', true), (int) get_post_meta($img['id'], '_bmr_message', true)]);

        $bob = $this->sub('bob');
        $r = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'photos', 'attachments' => [$img['id'], $doc['id']]]), 201);
        $this->assertSame([$img, $doc], $r['message']['attachments']);
        $ev = $bob->expect('message.new');
        $this->assertSame(BM_Relay_Ids::thread_kid($t['id'], 0), $ev['k'], 'sealed with the thread key');
        // (The subscriber prints JSON with its keys sorted.)
        $this->assertEquals([$img, $doc], $ev['payload']['data']['attachments'], 'the references, opened with the thread key');
        $this->assertLessThan(4000, strlen((string) json_encode($ev)), 'the files never travel (the text file alone is ' . filesize($txt) . ' bytes)');
        $this->assertStringNotContainsString('/uploads/', (string) json_encode($ev), 'no path of the file either');

        // Bob reads them back in the history, and fetches them through the gate.
        $listed = $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'bob'))['messages'];
        $this->assertSame([$img, $doc], end($listed)['attachments']);
        // The thread list's last message too (a files-only one previews by the names).
        $mine = array_values(array_filter($this->ok($this->rest('GET', '/threads', 'bob'))['threads'], static fn($x) => $x['id'] === $t['id']));
        $this->assertSame([$img, $doc], $mine[0]['last_message']['attachments']);
        $this->assertSame([$img, $doc], $this->ok($this->rest('GET', "/threads/{$t['id']}", 'bob'))['thread']['last_message']['attachments']);
        [$code, $head, $body] = $this->fetch_http('bob', $img['url']);
        $this->assertSame([200, 'image/png', 'nosniff'], [$code, $head['content-type'], $head['x-content-type-options']]);
        $this->assertStringStartsWith('inline', $head['content-disposition']);
        $this->assertSame(file_get_contents($png), $body);
        [$code, $head, $thumb] = $this->fetch_http('bob', $img['thumb']);
        $this->assertSame(200, $code);
        $this->assertSame([300, 225], array_slice(getimagesizefromstring($thumb), 0, 2), 'the thumbnail, not the full image');
        [$code, $head, $body] = $this->fetch_http('bob', $doc['url']);
        $this->assertSame([200, 'nosniff'], [$code, $head['x-content-type-options']]);
        $this->assertStringStartsWith('text/plain', $head['content-type']);
        $this->assertStringStartsWith('attachment; filename="notes.txt"', $head['content-disposition'], 'not an image: downloaded, never rendered');
        $this->assertSame(file_get_contents($txt), $body);

        // Deleting the message deletes its files (thumbnail and folder too).
        $folder = dirname($file);
        $this->ok($this->rest('DELETE', "/messages/{$r['message']['id']}", 'alice'));
        $this->assertFileDoesNotExist($file);
        $this->assertDirectoryDoesNotExist($folder);
        $this->assertNull(get_post($img['id']));
        $this->assertNull(get_post($doc['id']));
        $this->assertSame([], $this->ok($this->rest('GET', "/threads/{$t['id']}/messages", 'bob'))['messages'][0]['attachments']);
        $this->err($this->rest('GET', "/attachments/{$img['id']}", 'bob'), 404, 'bm_relay_no_attachment');
        unlink($png);
        unlink($txt);
    }

    public function test_limits_and_refusals_each_with_a_clear_error(): void
    {
        $t = $this->thread('alice', ['bob']);
        $png = $this->png(40, 30);

        // Too big: the site's limit, lowered by the filter.
        $small = static fn() => 100;
        add_filter('bm_relay_attachment_max_bytes', $small);
        try {
            $this->assertSame(100, BM_Relay_Attachments::max_bytes());
            $r = $this->upload_here('alice', $t['id'], ['name' => 'a.png', 'type' => 'image/png', 'tmp_name' => $png, 'error' => 0, 'size' => filesize($png)]);
            $this->err($r, 413, 'bm_relay_attachment_too_big');
            $this->assertSame('The file is too big: this site accepts files up to 100 B.', $r[1]['message']);
        } finally {
            remove_filter('bm_relay_attachment_max_bytes', $small);
        }
        $raise = static fn() => PHP_INT_MAX;
        add_filter('bm_relay_attachment_max_bytes', $raise);
        $this->assertSame((int) wp_max_upload_size(), BM_Relay_Attachments::max_bytes(), 'a filter cannot raise the site\'s limit');
        remove_filter('bm_relay_attachment_max_bytes', $raise);
        $this->err($this->upload_here('alice', $t['id'], ['name' => 'a.png', 'type' => 'image/png', 'tmp_name' => '', 'error' => UPLOAD_ERR_INI_SIZE, 'size' => 0]), 413, 'bm_relay_attachment_too_big');

        // Wrong type: not in the site's list, or content that is not what its name says.
        $php = $this->text_file('<?php echo 1;');
        $this->err($this->upload_here('alice', $t['id'], ['name' => 'x.php', 'type' => 'text/plain', 'tmp_name' => $php, 'error' => 0, 'size' => filesize($php)]), 415, 'bm_relay_attachment_type');
        $this->err($this->upload_here('alice', $t['id'], ['name' => 'fake.png', 'type' => 'image/png', 'tmp_name' => $php, 'error' => 0, 'size' => filesize($php)]), 415, 'bm_relay_attachment_type');
        $no_txt = static fn($m) => array_diff_key($m, ['txt|asc|c|cc|h|srt' => 1]);
        add_filter('bm_relay_attachment_mimes', $no_txt);
        $txt = $this->text_file('hello');
        $this->err($this->upload_here('alice', $t['id'], ['name' => 'a.txt', 'type' => 'text/plain', 'tmp_name' => $txt, 'error' => 0, 'size' => 5]), 415, 'bm_relay_attachment_type');
        remove_filter('bm_relay_attachment_mimes', $no_txt);

        // No file; not a member; no nonce; not allowed by the filter.
        $this->err($this->upload_here('alice', $t['id'], null), 400, 'bm_relay_no_file');
        $this->err($this->upload_here('dave', $t['id'], ['name' => 'a.png', 'type' => 'image/png', 'tmp_name' => $png, 'error' => 0, 'size' => filesize($png)]), 403, 'bm_relay_not_member');
        $this->err($this->upload_http('dave', $t['id'], $png, 'a.png', 'image/png'), 403, 'bm_relay_not_member');
        $this->err($this->upload_http('alice', $t['id'], $png, 'a.png', 'image/png', false), 401, 'bm_relay_not_logged_in');
        $nobody = static fn() => false;
        add_filter('bm_relay_can_attach', $nobody);
        $this->err($this->upload_here('alice', $t['id'], ['name' => 'a.png', 'type' => 'image/png', 'tmp_name' => $png, 'error' => 0, 'size' => filesize($png)]), 403, 'bm_relay_cannot_attach');
        remove_filter('bm_relay_can_attach', $nobody);
        $this->assertSame([], get_posts(['post_type' => 'attachment', 'post_status' => 'any', 'author' => $this->uid('dave'), 'fields' => 'ids']), 'nothing stored by a refused call');

        // A message carries only the sender's own unsent uploads of that thread.
        $u = $this->thread('alice', ['carol']);
        $a = $this->ok($this->upload_http('alice', $t['id'], $png, 'a.png', 'image/png'), 201)['attachment'];
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'bob', ['text' => 'mine?', 'attachments' => [$a['id']]]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$u['id']}/messages", 'alice', ['text' => 'elsewhere', 'attachments' => [$a['id']]]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['attachments' => ['x']]), 400, 'bm_relay_invalid_param');
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => '']), 400, 'bm_relay_invalid_param');
        // Unsent, it is its uploader's only (a member cannot peek).
        $this->err($this->rest('GET', "/attachments/{$a['id']}", 'bob'), 404, 'bm_relay_no_attachment');
        $this->assertSame(200, $this->rest('GET', "/attachments/{$a['id']}", 'alice')[0]);
        $m = $this->ok($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['attachments' => [$a['id']]]), 201)['message'];
        $this->assertSame(['', [$a['id']]], [$m['text'], array_column($m['attachments'], 'id')], 'files alone, no text');
        $this->err($this->rest('POST', "/threads/{$t['id']}/messages", 'alice', ['text' => 'again', 'attachments' => [$a['id']]]), 400, 'bm_relay_invalid_param');

        // Download: members (and moderators) only; others 403 over HTTP too.
        $this->err($this->rest('GET', "/attachments/{$a['id']}", 'dave'), 403, 'bm_relay_not_member');
        [$code, , $body] = $this->fetch_http('dave', $a['url']);
        $this->assertSame(403, $code);
        $this->assertStringNotContainsString((string) file_get_contents($png), $body);
        [$code] = $this->session('carol')->request('GET', substr($a['url'], strlen($this->h()->url)));
        $this->assertSame(401, $code, 'a cookie without the nonce is logged out to the REST API');
        $this->assertSame(200, $this->rest('GET', "/attachments/{$a['id']}", 'admin')[0], 'a moderator');
        $this->err($this->rest('GET', '/attachments/1', 'alice'), 404, 'bm_relay_no_attachment');
        unlink($png);
        unlink($php);
        unlink($txt);
    }

    public function test_export_lists_and_erase_deletes_a_users_files_retention_and_uninstall_too(): void
    {
        $login = 'gina' . wp_rand();
        $gina = (int) wp_insert_user(['user_login' => $login, 'user_pass' => wp_generate_password(), 'user_email' => "$login@example.test", 'display_name' => 'Gina', 'role' => 'subscriber']);
        $t = $this->thread('alice', ['bob']);
        BM_Relay_Store::add_member($t['id'], $gina, 0);
        $thread = BM_Relay_Store::thread($t['id']);
        $copy = function (string $path): array {
            $tmp = tempnam(sys_get_temp_dir(), 'bmr');
            copy($path, $tmp);
            return ['name' => basename($path), 'type' => '', 'tmp_name' => $tmp, 'error' => 0, 'size' => filesize($path)];
        };
        $png = $this->png(64, 48);
        $sent = BM_Relay_Attachments::store($copy($png), $t['id'], $gina, 'wp_handle_sideload');
        $kept = BM_Relay_Attachments::store($copy($png), $t['id'], $gina, 'wp_handle_sideload');
        $this->assertIsInt($sent);
        BM_Relay_Service::send_message($thread, $gina, 'my photo', null, [$sent]);
        $files = [$this->file_of($sent), $this->file_of($kept)];

        $exporters = apply_filters('wp_privacy_personal_data_exporters', []);
        $out = call_user_func($exporters['bm-relay-attachments']['callback'], "$login@example.test", 1);
        $this->assertTrue($out['done']);
        $this->assertSame(['bm-relay-attachment-' . $sent, 'bm-relay-attachment-' . $kept], array_column($out['data'], 'item_id'));
        $values = array_column($out['data'][0]['data'], 'value', 'name');
        $this->assertSame([basename($png), rest_url("bm/v1/attachments/$sent")], [$values['File name'], $values['URL']]);

        $erasers = apply_filters('wp_privacy_personal_data_erasers', []);
        $r = call_user_func($erasers['bm-relay-attachments']['callback'], "$login@example.test", 1);
        $this->assertSame([true, true], [$r['items_removed'], $r['done']]);
        foreach ($files as $f) {
            $this->assertFileDoesNotExist($f, 'erased: the files too');
        }
        $this->assertSame([], call_user_func($exporters['bm-relay-attachments']['callback'], "$login@example.test", 1)['data']);

        // Retention: a purged message takes its files; an upload never sent
        // goes a day later.
        $a = BM_Relay_Attachments::store($copy($png), $t['id'], $this->uid('alice'), 'wp_handle_sideload');
        $m = BM_Relay_Service::send_message($thread, $this->uid('alice'), 'old', null, [$a])['message'];
        $orphan = BM_Relay_Attachments::store($copy($png), $t['id'], $this->uid('alice'), 'wp_handle_sideload');
        $fresh = BM_Relay_Attachments::store($copy($png), $t['id'], $this->uid('alice'), 'wp_handle_sideload');
        $file = $this->file_of($a);
        BM_Relay_Store::purge_messages([$m['id']]);
        $this->assertFileDoesNotExist($file);
        wp_update_post(['ID' => $orphan, 'post_date_gmt' => gmdate('Y-m-d H:i:s', time() - 2 * DAY_IN_SECONDS), 'post_date' => gmdate('Y-m-d H:i:s', time() - 2 * DAY_IN_SECONDS)]);
        $this->assertSame(1, BM_Relay_Attachments::delete_orphans());
        $this->assertNull(get_post($orphan));
        $this->assertNotNull(get_post($fresh), 'an upload of today waits for its message');

        // Uninstall: every attachment of the plugin and the folder go.
        $fresh_file = $this->file_of($fresh);
        BM_Relay_Attachments::uninstall_site();
        $this->assertNull(get_post($fresh));
        $this->assertFileDoesNotExist($fresh_file);
        $this->assertDirectoryDoesNotExist(BM_Relay_Attachments::base_dir());
        require_once ABSPATH . 'wp-admin/includes/user.php';
        wp_delete_user($gina);
        unlink($png);
    }
}
