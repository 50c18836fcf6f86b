<?php

/**
 * Attachments (issue #16): images and files a member sends with a message,
 * kept in the site's own media handling, never on the relay.
 *
 * A file is uploaded first (`POST /threads/{id}/attachments`, multipart,
 * field `file`), through `wp_handle_upload()` with the site's own limits:
 * the size limit is `wp_max_upload_size()` (filter
 * `bm_relay_attachment_max_bytes` can lower it, never raise it), the types
 * are `get_allowed_mime_types()` for that user (filter
 * `bm_relay_attachment_mimes`), checked on the file's content, not its name.
 * It becomes a private attachment post owned by the plugin (post meta
 * `_bmr_thread`, `_bmr_message`: 0 until sent) and lives under
 * `uploads/bm-relay/<random dir>/<random name>.<ext>` (the name a person
 * gave it is kept only in the post title), a folder with deny files, so its
 * URL can be neither guessed nor fetched directly. A message then names it
 * (`attachments: [ids]`: only the sender's own, not yet sent uploads of that
 * thread); the link is a `bmr_message_meta` row (`attachment`, the post id),
 * so a page of messages finds its files by the table's message_id index in
 * one query. No table change: the meta table and posts already hold it.
 *
 * The message shape (and so the sealed `message.new` event) carries only a
 * reference: id, name, size, type, thumbnail and download URLs of the gated
 * route `GET /attachments/{id}`, which serves the file to members of its
 * thread (and moderators) only. Deleting a message, retention, the privacy
 * eraser and uninstall delete the posts and their files.
 *
 * @package bm-relay
 */

defined('ABSPATH') || exit;

/**
 * Uploads, references, the gated download and the clean-ups of attachments.
 */
final class BM_Relay_Attachments
{
    /** Post meta: the thread an attachment belongs to (also the plugin's marker). */
    public const THREAD_META = '_bmr_thread';
    /** Post meta: the message that carries it (0 while not sent). */
    public const MESSAGE_META = '_bmr_message';
    /** bmr_message_meta key of the message → attachment link. */
    public const LINK = 'attachment';
    /** Folder under uploads/ that holds every attachment. */
    public const DIR = 'bm-relay';
    /** Attachments one message may carry. */
    public const MAX_PER_MESSAGE = 10;
    /** Image size generated for thumbnails (fits in 300 × 300, not cropped). */
    private const THUMB_SIZE = 'medium';
    /** Types shown inline (as images); anything else is served as a download. */
    private const INLINE = ['image/jpeg', 'image/png', 'image/gif', 'image/webp'];
    /** Seconds an upload may wait to be sent before retention removes it. */
    private const ORPHAN_SECONDS = DAY_IN_SECONDS;

    /** Hooks: routes, the download, deletion, retention, privacy. */
    public static function register(): void
    {
        add_action('rest_api_init', [self::class, 'register_routes']);
        add_filter('rest_pre_serve_request', [self::class, 'serve'], 10, 4);
        add_action('bm_relay_messages_removed', [self::class, 'delete_for_messages']);
        // After the messages' own run: uploads never sent go a day later.
        add_action(BM_Relay_Retention::HOOK, [self::class, 'delete_orphans'], 20);
        add_filter('wp_privacy_personal_data_exporters', static function (array $exporters): array {
            $exporters['bm-relay-attachments'] = [
                'exporter_friendly_name' => __('Chat attachments (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'export'],
            ];
            return $exporters;
        });
        add_filter('wp_privacy_personal_data_erasers', static function (array $erasers): array {
            $erasers['bm-relay-attachments'] = [
                'eraser_friendly_name' => __('Chat attachments (bm-relay)', 'bm-relay'),
                'callback' => [self::class, 'erase'],
            ];
            return $erasers;
        });
    }

    /** The upload and download routes (permission: BM_Relay_REST::check). */
    public static function register_routes(): void
    {
        $check = [BM_Relay_REST::class, 'check'];
        register_rest_route(BM_Relay_REST::NS, '/threads/(?P<id>\d+)/attachments', [
            ['methods' => 'POST', 'callback' => [self::class, 'upload'], 'permission_callback' => $check],
        ]);
        register_rest_route(BM_Relay_REST::NS, '/attachments/(?P<id>\d+)', [
            ['methods' => 'GET', 'callback' => [self::class, 'download'], 'permission_callback' => $check],
        ]);
    }

    /**
     * The largest file a user may attach, in bytes: the site's upload limit
     * (`wp_max_upload_size()`, PHP's and WordPress's), lowered by the
     * `bm_relay_attachment_max_bytes` filter; a filter cannot raise it
     * (PHP would refuse the bigger upload anyway).
     */
    public static function max_bytes(): int
    {
        $site = (int) wp_max_upload_size();
        $mine = (int) apply_filters('bm_relay_attachment_max_bytes', $site);
        return max(0, $mine > 0 ? min($site, $mine) : $site);
    }

    /**
     * Extension pattern → MIME type a user may attach: the site's
     * `get_allowed_mime_types()` for them (without `unfiltered_html`, no
     * HTML nor JavaScript), filtered by `bm_relay_attachment_mimes`.
     *
     * @return array<string,string>
     */
    public static function mimes(int $user): array
    {
        $mimes = apply_filters('bm_relay_attachment_mimes', get_allowed_mime_types($user), $user);
        return is_array($mimes) ? $mimes : [];
    }

    /**
     * May `$user`, a member of `$thread`, attach files there? Chat users are
     * often Subscribers without `upload_files`, so the default is the chat
     * capability (`read`, filter `bm_relay_chat_capability`) with membership,
     * not `upload_files`; filter `bm_relay_can_attach` (allowed, user,
     * thread) to narrow it (e.g. `upload_files` only).
     */
    public static function can_attach(int $user, object $thread): bool
    {
        $cap = (string) apply_filters('bm_relay_chat_capability', 'read');
        return (bool) apply_filters('bm_relay_can_attach', user_can($user, $cap), $user, $thread);
    }

    /**
     * POST /threads/{id}/attachments — multipart, field `file`: stores one
     * upload of a member for that thread; 201 `{"attachment": reference}`.
     * 400 `bm_relay_no_file`, 413 `bm_relay_attachment_too_big`,
     * 415 `bm_relay_attachment_type`, 403 not a member / not allowed.
     */
    public static function upload(WP_REST_Request $request)
    {
        $found = self::member_thread($request['id'], false);
        if ($found instanceof WP_Error) {
            return $found;
        }
        $me = get_current_user_id();
        if (!self::can_attach($me, $found)) {
            return new WP_Error('bm_relay_cannot_attach', __('You are not allowed to attach files here.', 'bm-relay'), ['status' => 403]);
        }
        $files = $request->get_file_params();
        $file = $files['file'] ?? null;
        $max = self::max_bytes();
        if (!is_array($file) || !isset($file['tmp_name'], $file['name'], $file['size'], $file['error']) || is_array($file['name'])) {
            // A body over post_max_size reaches PHP as no file at all.
            $length = (int) ($_SERVER['CONTENT_LENGTH'] ?? 0);
            if ($length > 0 && $length > (int) wp_convert_hr_to_bytes((string) ini_get('post_max_size'))) {
                return self::too_big($max);
            }
            return new WP_Error('bm_relay_no_file', __('No file was sent (multipart field "file").', 'bm-relay'), ['status' => 400]);
        }
        $error = (int) $file['error'];
        if (in_array($error, [UPLOAD_ERR_INI_SIZE, UPLOAD_ERR_FORM_SIZE], true) || (int) $file['size'] > $max) {
            return self::too_big($max);
        }
        if ($error === UPLOAD_ERR_NO_FILE || ($error === UPLOAD_ERR_OK && (int) $file['size'] === 0)) {
            return new WP_Error('bm_relay_no_file', __('No file was sent, or it is empty.', 'bm-relay'), ['status' => 400]);
        }
        if ($error !== UPLOAD_ERR_OK) {
            return new WP_Error('bm_relay_upload_failed', __('The upload failed; try again.', 'bm-relay'), ['status' => 500]);
        }
        $stored = self::store($file, (int) $found->id, $me, 'wp_handle_upload');
        if ($stored instanceof WP_Error) {
            return $stored;
        }
        return new WP_REST_Response(['attachment' => self::refs([$stored])[$stored]], 201);
    }

    /** The 413 of a file over the limit, naming the limit. */
    private static function too_big(int $max): WP_Error
    {
        return new WP_Error(
            'bm_relay_attachment_too_big',
            /* translators: %s: a size such as "2 MB" */
            sprintf(__('The file is too big: this site accepts files up to %s.', 'bm-relay'), size_format($max)),
            ['status' => 413, 'max_bytes' => $max]
        );
    }

    /**
     * Stores a file (an upload, or with `wp_handle_sideload` a local file
     * of WP-CLI or a test) as the plugin's attachment of a thread, type
     * checked on its content, under a random name in a random folder.
     *
     * @param array{name:string,tmp_name:string,size:int,error:int,type?:string} $file
     * @return int|WP_Error the attachment post id
     */
    public static function store(array $file, int $thread, int $user, string $action)
    {
        require_once ABSPATH . 'wp-admin/includes/file.php';
        require_once ABSPATH . 'wp-admin/includes/image.php';
        $name = sanitize_file_name(wp_basename((string) $file['name']));
        $mimes = self::mimes($user);
        $check = wp_check_filetype_and_ext((string) $file['tmp_name'], $name, $mimes);
        if (!$check['type'] || !$check['ext']) {
            return new WP_Error('bm_relay_attachment_type', __('This type of file cannot be attached on this site.', 'bm-relay'), ['status' => 415]);
        }
        if (!empty($check['proper_filename'])) {
            $name = (string) $check['proper_filename'];
        }
        self::protect_folder();
        // A fresh random folder per file: its URL cannot be guessed, and
        // deleting the file leaves nothing of it behind.
        $sub = '/' . self::DIR . '/' . bin2hex(random_bytes(12));
        $dir = static function (array $u) use ($sub): array {
            $u['subdir'] = $sub;
            $u['path'] = $u['basedir'] . $sub;
            $u['url'] = $u['baseurl'] . $sub;
            return $u;
        };
        $named = ['name' => $name] + $file;
        add_filter('upload_dir', $dir);
        try {
            $moved = wp_handle_upload(
                $named,
                [
                    'test_form' => false,
                    'action' => $action,
                    'mimes' => $mimes,
                    'unique_filename_callback' => static fn($d, $n, $ext): string => bin2hex(random_bytes(16)) . strtolower((string) $ext),
                ],
                null
            );
        } finally {
            remove_filter('upload_dir', $dir);
        }
        if (!is_array($moved) || isset($moved['error'])) {
            $why = is_array($moved) ? (string) $moved['error'] : '';
            return new WP_Error('bm_relay_upload_failed', $why !== '' ? $why : __('The upload failed; try again.', 'bm-relay'), ['status' => 400]);
        }
        $id = wp_insert_attachment([
            'post_mime_type' => (string) $moved['type'],
            'post_title' => $name,
            'post_content' => '',
            // Private: no public attachment page, no listing for visitors.
            'post_status' => 'private',
            'post_author' => $user,
            'guid' => (string) $moved['url'],
        ], (string) $moved['file'], 0, true);
        if ($id instanceof WP_Error || !$id) {
            wp_delete_file((string) $moved['file']);
            return new WP_Error('bm_relay_upload_failed', __('The upload failed; try again.', 'bm-relay'), ['status' => 500]);
        }
        update_post_meta($id, self::THREAD_META, $thread);
        update_post_meta($id, self::MESSAGE_META, 0);
        if (in_array((string) $moved['type'], self::INLINE, true)) {
            // One thumbnail size, not the site's five: each costs a resize.
            $only = static fn($sizes) => array_intersect_key((array) $sizes, [self::THUMB_SIZE => true]);
            add_filter('intermediate_image_sizes_advanced', $only);
            try {
                wp_update_attachment_metadata($id, wp_generate_attachment_metadata($id, (string) $moved['file']));
            } finally {
                remove_filter('intermediate_image_sizes_advanced', $only);
            }
        }
        return (int) $id;
    }

    /**
     * Writes the deny files of uploads/bm-relay/ once: `.htaccess` (Apache
     * 2.2 and 2.4) and an empty `index.php`. nginx ignores them; its
     * `location` is in docs/PLUGIN.md.
     */
    public static function protect_folder(): void
    {
        $base = self::base_dir();
        if ($base === '') {
            return;
        }
        wp_mkdir_p($base);
        if (!is_file($base . '/.htaccess')) {
            file_put_contents($base . '/.htaccess', implode("\n", [
                "# bm-relay: chat attachments are served only through the plugin's gated route.",
                '<IfModule mod_authz_core.c>',
                '    Require all denied',
                '</IfModule>',
                '<IfModule !mod_authz_core.c>',
                '    Order allow,deny',
                '    Deny from all',
                '</IfModule>',
                '',
            ]));
        }
        if (!is_file($base . '/index.php')) {
            file_put_contents($base . '/index.php', "<?php\n// Silence is golden.\n");
        }
    }

    /** uploads/bm-relay without a trailing slash ('' when uploads are broken). */
    public static function base_dir(): string
    {
        $u = wp_get_upload_dir();
        return empty($u['basedir']) ? '' : rtrim((string) $u['basedir'], '/') . '/' . self::DIR;
    }

    /**
     * The `attachments` of a send: null/absent → [], else 1 … 10 distinct
     * ids, each an upload of `$user` for this thread not sent yet.
     *
     * @return list<int>|WP_Error
     */
    public static function param($value, object $thread, int $user)
    {
        if ($value === null || $value === []) {
            return [];
        }
        if (!is_array($value) || count($value) > self::MAX_PER_MESSAGE) {
            /* translators: %d: maximum number of attachments */
            return BM_Relay_Params::bad('attachments', sprintf(__('must be a list of at most %d attachment ids', 'bm-relay'), self::MAX_PER_MESSAGE));
        }
        $ids = [];
        foreach (array_values($value) as $raw) {
            $id = BM_Relay_Params::id($raw, 'attachments');
            if ($id instanceof WP_Error) {
                return $id;
            }
            $post = get_post($id);
            if (
                !$post || $post->post_type !== 'attachment' || (int) $post->post_author !== $user
                || (int) get_post_meta($id, self::THREAD_META, true) !== (int) $thread->id
                || (int) get_post_meta($id, self::MESSAGE_META, true) !== 0
            ) {
                return BM_Relay_Params::bad('attachments', __('must be your own uploads to this conversation, not sent yet', 'bm-relay'));
            }
            $ids[$id] = $id;
        }
        return array_values($ids);
    }

    /**
     * Links uploads to the message that carries them (the caller checked
     * them with param()).
     *
     * @param list<int> $ids
     */
    public static function attach(int $message, int $user, array $ids): void
    {
        global $wpdb;
        $t = BM_Relay_Schema::tables();
        foreach ($ids as $id) {
            update_post_meta($id, self::MESSAGE_META, $message);
            $wpdb->query($wpdb->prepare(
                "INSERT IGNORE INTO {$t['meta']} (message_id, user_id, meta_key, meta_value, created_at) VALUES (%d, %d, %s, %s, %s)",
                $message,
                $user,
                self::LINK,
                (string) $id,
                BM_Relay_Store::now()
            ));
        }
    }

    /**
     * Attachment post ids of messages, in upload order: one query on the
     * meta table's message_id index.
     *
     * @param list<int> $messages
     * @return array<int,list<int>> message id → attachment ids
     */
    public static function ids_of(array $messages): array
    {
        global $wpdb;
        if (!$messages) {
            return [];
        }
        $t = BM_Relay_Schema::tables();
        $in = implode(',', array_fill(0, count($messages), '%d'));
        $rows = $wpdb->get_results($wpdb->prepare(
            "SELECT message_id, meta_value FROM {$t['meta']} WHERE message_id IN ($in) AND meta_key = %s ORDER BY id",
            ...array_merge($messages, [self::LINK])
        ));
        $out = [];
        foreach ($rows as $r) {
            $out[(int) $r->message_id][] = (int) $r->meta_value;
        }
        return $out;
    }

    /**
     * Message shapes with their `attachments` (references; [] for none or a
     * deleted message), read in a fixed number of queries.
     *
     * @param list<array<string,mixed>> $messages shapes of BM_Relay_Store::format_message()
     * @return list<array<string,mixed>>
     */
    public static function add_refs(array $messages): array
    {
        $ids = self::ids_of(array_map(static fn($m) => (int) $m['id'], $messages));
        $refs = self::refs($ids ? array_merge(...array_values($ids)) : []);
        foreach ($messages as &$m) {
            $m['attachments'] = [];
            foreach ($m['deleted'] ? [] : ($ids[(int) $m['id']] ?? []) as $a) {
                if (isset($refs[$a])) {
                    $m['attachments'][] = $refs[$a];
                }
            }
        }
        unset($m);
        return $messages;
    }

    /**
     * References of attachments: what travels in a message (never the file,
     * never its path on disk): id, the name it was given, size in bytes,
     * MIME type, download URL, thumbnail URL (inline images only, else
     * null), and an image's width and height.
     *
     * @param list<int> $ids
     * @return array<int,array<string,mixed>> id → reference
     */
    public static function refs(array $ids): array
    {
        if (!$ids) {
            return [];
        }
        _prime_post_caches($ids, false, true);
        $out = [];
        foreach ($ids as $id) {
            $post = get_post($id);
            if (!$post || $post->post_type !== 'attachment') {
                continue;
            }
            $file = (string) get_attached_file($id, true);
            $meta = wp_get_attachment_metadata($id);
            $meta = is_array($meta) ? $meta : [];
            $type = (string) $post->post_mime_type;
            $url = rest_url(BM_Relay_REST::NS . '/attachments/' . $id);
            $image = in_array($type, self::INLINE, true);
            $out[$id] = [
                'id' => (int) $id,
                'name' => (string) $post->post_title,
                'size' => (int) ($meta['filesize'] ?? (is_file($file) ? filesize($file) : 0)),
                'type' => $type,
                'url' => $url,
                'thumb' => $image ? add_query_arg('size', 'thumb', $url) : null,
                'width' => $image && isset($meta['width']) ? (int) $meta['width'] : null,
                'height' => $image && isset($meta['height']) ? (int) $meta['height'] : null,
            ];
        }
        return $out;
    }

    /**
     * GET /attachments/{id}?size=thumb — the file, for members of its
     * thread and moderators (an upload not sent yet: its uploader only);
     * the body is streamed by serve(). 404 for anything that is not the
     * plugin's attachment, so ids of other media say nothing.
     */
    public static function download(WP_REST_Request $request)
    {
        $id = BM_Relay_Params::id($request['id'], 'id');
        if ($id instanceof WP_Error) {
            return $id;
        }
        $post = get_post($id);
        $thread = $post && $post->post_type === 'attachment' ? (int) get_post_meta($id, self::THREAD_META, true) : 0;
        if ($thread < 1) {
            return self::missing();
        }
        $found = self::member_thread((string) $thread, true);
        if ($found instanceof WP_Error) {
            return $found;
        }
        $me = get_current_user_id();
        if ((int) get_post_meta($id, self::MESSAGE_META, true) === 0 && (int) $post->post_author !== $me) {
            return self::missing();
        }
        $path = self::path($id, $request->get_param('size') === 'thumb');
        if ($path === null) {
            return self::missing();
        }
        $type = (string) $post->post_mime_type;
        $inline = in_array($type, self::INLINE, true);
        $name = (string) $post->post_title;
        $ascii = (string) preg_replace('/[^A-Za-z0-9._-]+/', '_', $name);
        $res = new WP_REST_Response(['id' => $id, 'name' => $name, 'type' => $type, 'size' => (int) filesize($path)]);
        $res->set_headers([
            'Content-Type' => $inline ? $type : ($type !== '' ? $type : 'application/octet-stream'),
            'Content-Disposition' => ($inline ? 'inline' : 'attachment') . '; filename="' . $ascii . '"; filename*=UTF-8\'\'' . rawurlencode($name),
            'Content-Length' => (string) filesize($path),
            'X-Content-Type-Options' => 'nosniff',
            // Even a file a browser would render runs nothing.
            'Content-Security-Policy' => "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
            'Cache-Control' => 'private, max-age=3600',
        ]);
        return $res;
    }

    /** The 404 of an attachment that is not there (or not for this user). */
    private static function missing(): WP_Error
    {
        return new WP_Error('bm_relay_no_attachment', __('No such attachment.', 'bm-relay'), ['status' => 404]);
    }

    /** The file of an attachment on disk (its thumbnail when asked and made), or null. */
    private static function path(int $id, bool $thumb): ?string
    {
        $file = (string) get_attached_file($id, true);
        if ($thumb) {
            $meta = wp_get_attachment_metadata($id);
            $small = is_array($meta) ? ($meta['sizes'][self::THUMB_SIZE]['file'] ?? '') : '';
            if ($small !== '' && is_file(dirname($file) . '/' . $small)) {
                return dirname($file) . '/' . $small;
            }
        }
        return is_file($file) ? $file : null;
    }

    /**
     * `rest_pre_serve_request`: streams the file of a successful download
     * instead of the JSON (the REST server has sent the status and the
     * headers download() set). Other responses pass untouched.
     *
     * @param bool $served
     */
    public static function serve($served, $result, $request, $server)
    {
        if ($served || !$result instanceof WP_REST_Response || !$request instanceof WP_REST_Request) {
            return $served;
        }
        if ($result->get_status() !== 200 || $result->get_matched_route() !== '/' . BM_Relay_REST::NS . '/attachments/(?P<id>\d+)') {
            return $served;
        }
        $data = $result->get_data();
        $path = is_array($data) && isset($data['id']) ? self::path((int) $data['id'], $request->get_param('size') === 'thumb') : null;
        if ($path === null) {
            return $served;
        }
        // Some WordPress builds send their no-cache headers after this
        // filter: with the body already out, they could only warn. The
        // download sets its own Cache-Control (private).
        add_filter('rest_send_nocache_headers', '__return_false', PHP_INT_MAX);
        if ($request->get_method() !== 'HEAD') {
            while (ob_get_level() > 0) {
                ob_end_clean();
            }
            readfile($path);
        }
        return true;
    }

    /**
     * The thread of an attachment's route for the current user: a member,
     * or (with `$moderation`) a moderator; the errors of BM_Relay_REST.
     *
     * @return object|WP_Error the thread row
     */
    private static function member_thread($raw_id, bool $moderation)
    {
        $found = BM_Relay_REST::member_thread($raw_id, $moderation);
        return $found instanceof WP_Error ? $found : $found[0];
    }

    /**
     * Action `bm_relay_messages_removed` (a message deleted, or purged by
     * retention or the eraser; fired before its meta rows go): deletes the
     * attachments of those messages, files and thumbnails included.
     *
     * @param list<int> $messages
     */
    public static function delete_for_messages(array $messages): void
    {
        $ids = self::ids_of(array_map('intval', $messages));
        foreach ($ids ? array_merge(...array_values($ids)) : [] as $id) {
            self::delete($id);
        }
    }

    /** Deletes one of the plugin's attachments: post, file, thumbnails, its folder. */
    public static function delete(int $id): bool
    {
        if ((int) get_post_meta($id, self::THREAD_META, true) < 1) {
            return false;
        }
        $file = (string) get_attached_file($id, true);
        $done = (bool) wp_delete_attachment($id, true);
        $dir = dirname($file);
        // The random folder held this file only.
        if ($file !== '' && strpos($dir, self::base_dir() . '/') === 0 && is_dir($dir)) {
            @rmdir($dir); // phpcs:ignore -- not empty only if something else wrote there
        }
        return $done;
    }

    /**
     * Retention run: uploads never sent with a message within a day (a tab
     * closed mid-way) are deleted. Returns how many.
     */
    public static function delete_orphans(): int
    {
        $posts = get_posts([
            'post_type' => 'attachment',
            'post_status' => ['private', 'inherit'],
            'fields' => 'ids',
            'numberposts' => 500,
            'date_query' => [['before' => gmdate('Y-m-d H:i:s', time() - self::ORPHAN_SECONDS), 'column' => 'post_date_gmt']],
            'meta_query' => [['key' => self::MESSAGE_META, 'value' => '0']],
            'suppress_filters' => true,
        ]);
        foreach ($posts as $id) {
            self::delete((int) $id);
        }
        return count($posts);
    }

    /** Attachment ids a user uploaded, oldest first. @return list<int> */
    private static function uploaded_by(int $user, int $limit, int $offset): array
    {
        return array_map('intval', get_posts([
            'post_type' => 'attachment',
            'post_status' => ['private', 'inherit'],
            'author' => $user,
            'fields' => 'ids',
            'numberposts' => $limit,
            'offset' => $offset,
            'orderby' => 'ID',
            'order' => 'ASC',
            'meta_query' => [['key' => self::THREAD_META, 'compare' => 'EXISTS']],
            'suppress_filters' => true,
        ]));
    }

    /**
     * Exporter: one item per file the user uploaded (name, type, size,
     * thread, message, time, its URL through the gated route), 100 a page.
     *
     * @return array{data:list<array>,done:bool}
     */
    public static function export(string $email, int $page = 1): array
    {
        $user = get_user_by('email', $email);
        if (!$user) {
            return ['data' => [], 'done' => true];
        }
        $ids = self::uploaded_by((int) $user->ID, 100, (max(1, $page) - 1) * 100);
        $refs = self::refs($ids);
        $data = [];
        foreach ($refs as $id => $ref) {
            $data[] = [
                'group_id' => 'bm-relay-attachments',
                'group_label' => __('Chat attachments', 'bm-relay'),
                'item_id' => 'bm-relay-attachment-' . $id,
                'data' => [
                    ['name' => __('File name', 'bm-relay'), 'value' => $ref['name']],
                    ['name' => __('Type', 'bm-relay'), 'value' => $ref['type']],
                    ['name' => __('Size (bytes)', 'bm-relay'), 'value' => $ref['size']],
                    ['name' => __('Thread', 'bm-relay'), 'value' => (int) get_post_meta($id, self::THREAD_META, true)],
                    ['name' => __('Message', 'bm-relay'), 'value' => (int) get_post_meta($id, self::MESSAGE_META, true)],
                    ['name' => __('Uploaded (UTC)', 'bm-relay'), 'value' => (string) get_post_field('post_date_gmt', $id)],
                    ['name' => __('URL', 'bm-relay'), 'value' => $ref['url']],
                ],
            ];
        }
        return ['data' => $data, 'done' => count($ids) < 100];
    }

    /**
     * Eraser: deletes every file the user uploaded (sent or not; the
     * messages' eraser removes the messages), 100 a page.
     *
     * @return array{items_removed:bool,items_retained:bool,messages:list<string>,done:bool}
     */
    public static function erase(string $email, int $page = 1): array
    {
        $user = get_user_by('email', $email);
        if (!$user) {
            return ['items_removed' => false, 'items_retained' => false, 'messages' => [], 'done' => true];
        }
        // Always the first page: what was erased is gone from the listing.
        $ids = self::uploaded_by((int) $user->ID, 100, 0);
        $removed = false;
        foreach ($ids as $id) {
            $removed = self::delete($id) || $removed;
        }
        return ['items_removed' => $removed, 'items_retained' => false, 'messages' => [], 'done' => count($ids) < 100];
    }

    /**
     * Uninstall (each site): every attachment of the plugin, then the
     * uploads/bm-relay folder itself.
     */
    public static function uninstall_site(): void
    {
        global $wpdb;
        $ids = $wpdb->get_col($wpdb->prepare("SELECT post_id FROM {$wpdb->postmeta} WHERE meta_key = %s", self::THREAD_META));
        foreach ($ids as $id) {
            wp_delete_attachment((int) $id, true);
        }
        $base = self::base_dir();
        if ($base !== '' && is_dir($base)) {
            $it = new RecursiveIteratorIterator(new RecursiveDirectoryIterator($base, FilesystemIterator::SKIP_DOTS), RecursiveIteratorIterator::CHILD_FIRST);
            foreach ($it as $f) {
                $f->isDir() ? @rmdir($f->getPathname()) : wp_delete_file($f->getPathname()); // phpcs:ignore
            }
            @rmdir($base); // phpcs:ignore
        }
    }
}
