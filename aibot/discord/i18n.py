"""Words for members, in Korean and English: command names and descriptions (through
discord.py's `app_commands.Translator`) and every message the bot writes.

This is the one place that turns an `AibotError` kind into words (`error_text`).
A member reads Korean when their Discord client is set to Korean (`ko`), English
otherwise. Every text is a template filled with `str.format` fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import discord
from discord import app_commands

from aibot.jobs import AibotError, BadRequest, LimitReached

__all__ = [
    "COMMAND_TEXT_KO",
    "Translator",
    "duration",
    "error_text",
    "language",
    "text",
]

# English source string (command and parameter names, descriptions, choice names) ->
# Korean. discord.py hands every one of them to the translator when it builds the
# command payload, so names and descriptions stay plain English in the cogs.
COMMAND_TEXT_KO: Mapping[str, str] = MappingProxyType(
    {
        # /chat
        "chat": "채팅",
        "Ask the AI; the answer appears as it is written": (
            "AI에게 물어보세요. 답이 쓰이는 대로 보여요"
        ),
        "prompt": "프롬프트",
        "What you want to ask or say": "물어보거나 말하고 싶은 내용",
        # /image
        "image": "이미지",
        "Make an image from a description": "설명으로 이미지를 만들어요",
        "What the image should show": "이미지에 담을 내용",
        "provider": "제공자",
        "Which image service to use (default: the first one with room)": (
            "사용할 이미지 서비스 (기본: 여유 있는 첫 서비스)"
        ),
        "aspect_ratio": "비율",
        "Shape of the image, width:height (default 1:1)": "이미지 비율, 가로:세로 (기본 1:1)",
        "negative_prompt": "제외할-내용",
        "What the image must not show": "이미지에 넣지 말아야 할 것",
        "picture": "사진",
        "A picture to start from: the new image is made from it (PNG, JPEG or WebP)": (
            "이 사진을 바탕으로 새 이미지를 만들어요 (PNG, JPEG, WebP)"
        ),
        "strength": "강도",
        "How much to change the picture: 0 keeps it, 1 ignores it (default 0.6)": (
            "사진을 얼마나 바꿀지: 0은 그대로, 1은 무시 (기본 0.6)"
        ),
        # /video
        "video": "비디오",
        "Make a short video (takes a few minutes)": "짧은 비디오를 만들어요 (몇 분 걸려요)",
        "What happens in the video": "비디오에서 일어날 일",
        "model": "모델",
        "Video model name (default: the configured one)": "비디오 모델 이름 (기본: 설정된 모델)",
        "duration": "길이",
        "Length of the clip in seconds (default 6)": "영상 길이(초) (기본 6)",
        "6 seconds": "6초",
        "10 seconds": "10초",
        "A picture the clip starts from (PNG or JPEG)": "영상이 시작할 첫 장면 사진 (PNG, JPEG)",
        # admin pool
        "ping": "핑",
        "Gateway latency per shard, and the pools running here": (
            "샤드별 게이트웨이 지연 시간과 여기서 도는 풀"
        ),
        "status": "상태",
        "What each pool is doing: workers, queue, latency, keys, budget": (
            "각 풀의 상태: 작업자, 대기열, 지연 시간, 키, 예산"
        ),
        "instances": "인스턴스",
        "Which pool serves which channels and commands, and where it runs": (
            "어느 풀이 어느 채널과 명령을 맡고 어디서 도는지"
        ),
        # /admin, /stats, /reset (aibot/discord/manage.py)
        "admin": "관리",
        "Run the bot: key health, limits, pauses and jobs": (
            "봇 운영: 키 상태, 한도, 일시 정지, 작업"
        ),
        "keys": "키",
        "Health of every key per pool and provider (redacted)": (
            "풀·제공자별 모든 키의 상태 (가려서 보여요)"
        ),
        "quota": "한도",
        "Show or set this server's cooldown, daily quota and daily budget": (
            "이 서버의 쿨다운, 하루 사용량, 하루 예산을 보거나 바꿔요"
        ),
        "pool": "풀",
        "The pool whose limits to show or change": "한도를 보거나 바꿀 풀",
        "cooldown": "쿨다운",
        "Seconds a member waits between two commands": "멤버가 명령 사이에 기다리는 초",
        "daily_quota": "하루-사용량",
        "Commands per member per day (0: no limit)": "멤버당 하루 명령 수 (0: 제한 없음)",
        "daily_budget": "하루-예산",
        "Commands per day for the whole server (0: no limit)": (
            "서버 전체의 하루 명령 수 (0: 제한 없음)"
        ),
        "reset": "초기화",
        "Go back to the bot's settings for this pool": "이 풀의 한도를 봇 설정값으로 되돌려요",
        "pause": "일시정지",
        "Stop a pool taking new jobs; running ones finish": (
            "풀이 새 작업을 받지 않게 해요. 진행 중인 작업은 끝까지 해요"
        ),
        "The pool to pause": "멈출 풀",
        "resume": "재개",
        "Let a paused pool take jobs again": "멈춘 풀이 다시 작업을 받게 해요",
        "The pool to resume": "다시 시작할 풀",
        "jobs": "작업",
        "List this server's queued and running jobs, or cancel one": (
            "이 서버의 대기·진행 중 작업을 보거나 하나를 취소해요"
        ),
        "Only this pool's jobs": "이 풀의 작업만",
        "cancel": "취소",
        "The id of a job to cancel (from the list)": "취소할 작업의 id (목록에서)",
        "backup": "백업",
        "Back the bot's data up now, checked, and say where": (
            "봇의 데이터를 지금 백업하고 검사한 뒤 어디에 있는지 알려줘요"
        ),
        "stats": "통계",
        "Jobs, failures and estimated cost today and over the last 7 days": (
            "오늘과 최근 7일의 작업, 실패, 예상 비용"
        ),
        "Forget your /chat conversation in this channel": "이 채널에서 나눈 /채팅 대화를 잊어요",
    }
)

_TEXT: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "en": MappingProxyType(
            {
                "redirect": "`/{command}` works in {channels}. Please use it there.",
                "redirect_none": "`/{command}` does not work in this channel.",
                "not_here": "`/{command}` is not served by this bot right now.",
                "not_synced": (
                    "`/{command}` is not served by this bot right now. An admin can update "
                    "the command list with `python3 run.py --sync`."
                ),
                "queued": "⏳ In line: number {position}. Your answer comes as soon as it starts.",
                "video_queued": "🎬 Your video is number {position} in line.",
                "video_starting": "🎬 Starting your video…",
                "video_progress": "🎬 Making your video: {stage}, {elapsed} so far.",
                "video_done": "🎬 Here is your video ({seconds}).",
                "video_link": "🎬 Your video is ready ({seconds}): {url}",
                "video_too_large": "🎬 Your video is ready, but it is too large to upload here.",
                "image_title": "Your image",
                "picture_type": (
                    "🖼️ That attachment is not a picture I can use. Please attach a {kinds} image."
                ),
                "picture_too_large": (
                    "🖼️ That picture is {size}; the most I can take is {limit}. "
                    "Please attach a smaller one."
                ),
                "strength_needs_picture": (
                    "🖼️ `strength` says how much to change a picture: attach one with `picture`."
                ),
                "delivered_late": "{mention}, here is your `/{command}` answer:",
                "failed_late": "{mention}, your `/{command}` did not work:",
                "field_provider": "Provider",
                "field_model": "Model",
                "field_seed": "Seed",
                "field_time": "Time taken",
                "field_prompt": "Prompt",
                "stage_queued": "waiting in line",
                "stage_running": "started",
                "stage_preparing": "preparing",
                "stage_processing": "rendering",
                "stage_downloading": "downloading",
                "ping": "🏓 Pong! Gateway latency: {shards}.\nPools here: {pools}.",
                "ping_shard": "shard {shard} {ms}",
                "status_title": "Pools",
                "status_line": (
                    "{state} · workers {busy}/{total} · queued {queued}/{queue_size} · "
                    "done {done} · failed {failed}\n"
                    "p50 {p50} · p95 {p95} · keys {keys_ok}/{keys} healthy · calls ready {budget}"
                ),
                "status_missing": "not running in this process",
                "status_off": "off: no keys",
                "instances_title": "Where each pool runs",
                "instances_line": "commands: {commands}\nchannels: {channels}\nruns: {where}",
                "here": "this process",
                "elsewhere": "another process (not in AIBOT_POOLS here)",
                "ping_cluster": "Nodes live: {nodes} · Redis round trip: {redis}.",
                "redis_unreachable": "unreachable",
                "status_nowhere": "no live node runs it",
                "nowhere": "no live node",
                "nodes_title": "Nodes",
                "node_name": "🖥 {name}",
                "node_name_here": "🖥 {name} (this process)",
                "node_line": "pools: {pools}\nshards: {shards} · version {version} · up {age}",
                "node_pool": "{pool} ({free} free)",
                "node_more": "and {count} more nodes",
                "state_running": "running",
                "state_paused": "paused",
                "state_draining": "draining",
                "state_stopped": "stopped",
                "none": "none",
                # /admin, /stats, /reset (aibot/discord/manage.py)
                "admin_refused": (
                    "🔒 `/admin` is for server managers (Manage Server) and the bot's admin role."
                ),
                "admin_pool_missing": "The `{pool}` pool does not run in this process.",
                "admin_keys_title": "Keys by pool and provider",
                "admin_keys_none": "No pool with keys runs in this process.",
                "admin_key_line": (
                    "`{key_id}` {state} · calls {calls} · 429s {limited} · failures {failures}"
                ),
                "admin_key_rest": " · resting for {wait}",
                "admin_key_ready": "ready",
                "admin_key_busy": "busy",
                "admin_key_cooling": "cooling",
                "admin_key_disabled": "disabled",
                "admin_quota_title": "Limits on this server",
                "admin_quota_line": (
                    "cooldown {cooldown} · per member {quota} a day · whole server {budget} a day"
                ),
                "admin_quota_unlimited": "no limit",
                "admin_quota_saved": "✅ Saved the new limits for `{pool}`.",
                "admin_quota_reset": "↩️ `{pool}` follows the bot's settings again.",
                "admin_quota_pick_pool": "Choose a `pool` to change its limits.",
                "admin_quota_above_bot": (
                    "⚠️ Not saved: a server's `{pool}` budget can be at most the bot's, "
                    "{budget} a day for every server together."
                ),
                "admin_quota_bot_budget": "{budget} (the bot's, every server together)",
                "admin_paused": (
                    "⏸️ The `{pool}` pool is paused, on every server this bot is in: members are "
                    "told so, running jobs finish. `/admin resume` starts it again."
                ),
                "admin_resumed": "▶️ The `{pool}` pool takes jobs again.",
                "admin_pool_state": "The `{pool}` pool is {state}.",
                "admin_jobs_title": "Queued and running jobs on this server",
                "admin_jobs_none": "No queued or running jobs on this server.",
                "admin_more": "… and {count} more",
                "admin_job_line": "`{id}` · {state} · /{command} · <@{user}>",
                "admin_job_running": "running",
                "admin_job_queued": "queued",
                "admin_cancelled": (
                    "✖️ Cancelled job `{id}` (`/{command}` of <@{user}>); they are told."
                ),
                "admin_cancel_unknown": "No queued or running job `{id}` on this server.",
                "admin_cancel_late": (
                    "Job `{id}` (`/{command}` of <@{user}>) is being answered already: "
                    "too late to cancel."
                ),
                "stats_title": "Usage on this server",
                "stats_today": "Today ({day})",
                "stats_week": "Last {days} days",
                "stats_line": "**{pool}** · {provider}: jobs {jobs} · failed {failed}",
                "stats_none": "No jobs yet.",
                "stats_top": "Top members ({days} days)",
                "stats_top_line": "{rank}. <@{user}> · jobs {jobs}",
                # the admin rooms: alerts, the live status, the daily summary, backups
                "alert_key_disabled": (
                    "🔑 A key of the `{pool}` pool (`{provider}`) was disabled: `{key_id}` "
                    "({reason}). Replace it in the settings and restart."
                ),
                "alert_no_keys": (
                    "🚫 The `{pool}` pool has no usable key left: its jobs go to the admin pool "
                    "or fail. Add a working key and restart."
                ),
                "alert_paused": (
                    "⏸️ The `{pool}` pool was paused by {by} on {guild}. "
                    "`/admin resume` starts it again."
                ),
                "alert_resumed": "▶️ The `{pool}` pool was resumed by {by} on {guild}.",
                "alert_provider_failing": (
                    "🔥 `{provider}` keeps failing in the `{pool}` pool: {failures} jobs over "
                    "{seconds} s, none succeeded ({reason}). Check the provider's status page."
                ),
                "alert_budget_server": (
                    "💸 This server has used {used} of its {budget} `{pool}` jobs for today (90%). "
                    "`/admin quota` changes the budget."
                ),
                "alert_budget_bot": (
                    "💸 The `{pool}` pool has used {used} of its daily budget of {budget} jobs "
                    "(90%), across every server. New jobs are refused once it is spent."
                ),
                "alert_restarted": (
                    "🔄 The bot restarted and resumed {jobs} unfinished job(s); they are "
                    "delivered when done."
                ),
                "alert_reclaimed": (
                    "🔄 A `{pool}` worker stopped answering (it crashed or stalled): {node} "
                    "took over {jobs} of its unfinished job(s); they are delivered when done."
                ),
                "alert_backup_failed": (
                    "💾 The backup failed: {reason}. Check the disk and `AIBOT_BACKUP_DIR`."
                ),
                "alert_folded": "🔁 {count} more like this in the last {minutes} min, latest:",
                "room_status_footer": "Kept up to date by the bot",
                "summary_title": "Yesterday, {day}",
                "summary_totals": "jobs {jobs} · failed {failed} · estimated cost {cost}",
                "summary_busiest": "Busiest hour: {start}:00-{end}:00, {jobs} jobs",
                "summary_pools": "Per pool and provider",
                "backup_done": (
                    "💾 Backup made and checked: `{path}` ({size}, {seconds} s). "
                    "The newest {keep} made by hand are kept, apart from the daily ones."
                ),
                "backup_failed": "💾 The backup failed: {reason}",
                "reset_done": (
                    "🧹 I forgot our conversation in this channel. Your next `/chat` starts fresh."
                ),
                "reset_empty": "There is no conversation to forget in this channel.",
                "answer_cut_short": (
                    "-# ✂️ The answer stops here: it reached the length this bot allows."
                ),
                "memory_dropped": (
                    "-# Our conversation grew past what I keep: I forgot the oldest "
                    "{turns} exchange(s). `/reset` starts fresh."
                ),
                # Errors: one text per AibotError kind.
                "error_bad_request": "⚠️ That request cannot be done: {detail}",
                "bad_picture_gone": "the picture is no longer available: please attach it again",
                "bad_picture_kind": "the picture is not a {kinds} image",
                "bad_picture_size": "the picture is larger than {limit} MB",
                "bad_picture_unread": "no image service here can start from a {kind} picture",
                "bad_picture_unread_by": "{provider} cannot start from a {kind} picture",
                "error_bad_request_plain": "⚠️ That request cannot be done. Check the options.",
                "error_rejected": (
                    "🚫 The provider's safety system refused this. Try different words."
                ),
                "error_rate_limited": "⌛ Every key for this is busy. Try again in {wait}.",
                "error_rate_limited_plain": "⌛ Every key for this is busy. Try again in a minute.",
                "error_no_key": "⌛ Every key for this is busy. Try again in {wait}.",
                "error_no_key_plain": (
                    "🔑 No working key for this right now: an admin needs to check them. "
                    "Please try again later."
                ),
                "error_bad_key": (
                    "🔑 The provider refused every key this bot has. An admin needs to check "
                    "them; please try again later."
                ),
                "error_unavailable": (
                    "🔌 The AI provider is down or not answering. Try again in a minute."
                ),
                "error_incomplete": (
                    "✂️ The answer was cut off: the AI provider stopped before it was "
                    "finished. Please try again."
                ),
                "error_bad_answer": (
                    "🔌 The AI provider sent back a broken answer. Please try again."
                ),
                "error_misconfigured": (
                    "⚙️ The AI provider does not know what this bot asked for (a model "
                    "in its settings). An admin needs to check them; please try again later."
                ),
                "error_busy": "🚦 Busy right now: about {wait} of work ahead. Try again then.",
                "error_busy_plain": "🚦 Busy right now. Try again in a minute.",
                "error_limit_cooldown": "⏱️ Slow down a little: try again in {wait}.",
                "error_limit_quota": (
                    "📅 You have used today's `/{command}` allowance. It comes back in {wait}."
                ),
                "error_limit_budget": (
                    "📅 Today's `/{command}` budget is used up. It comes back in {wait}."
                ),
                "error_paused": "⏸️ `/{command}` is paused by an admin. Try again later.",
                "error_shutting_down": "🔄 The bot is restarting. Try again in a minute.",
                "error_cancelled": "✖️ An admin cancelled this request.",
                "error_internal": "⚠️ Something went wrong on our side. Please try again.",
                "error_restarted": (
                    "🔄 The bot restarted while it was working on this. Please ask again."
                ),
                "empty_prompt": "✏️ Your prompt is empty. Write what you want, then try again.",
                "provider_not_here": (
                    "🔧 This bot has no `{provider}` key for this here. Choose one of "
                    "{offered}, or leave the provider out."
                ),
                "error_unreachable": (
                    "🔌 The bot is temporarily unavailable. Please try again shortly."
                ),
                "error_gave_up": "⚠️ This could not be done. Please try again.",
            }
        ),
        "ko": MappingProxyType(
            {
                "redirect": "`/{command}` 명령은 {channels}에서 쓸 수 있어요. 그곳에서 써 주세요.",
                "redirect_none": "`/{command}` 명령은 이 채널에서 쓸 수 없어요.",
                "not_here": "`/{command}` 명령은 지금 이 봇에서 처리하지 않아요.",
                "not_synced": (
                    "`/{command}` 명령은 지금 이 봇에서 처리하지 않아요. 관리자가 "
                    "`python3 run.py --sync`로 명령 목록을 새로 고칠 수 있어요."
                ),
                "queued": "⏳ 대기 순서: {position}번. 시작되면 바로 답이 나와요.",
                "video_queued": "🎬 비디오 대기 순서: {position}번이에요.",
                "video_starting": "🎬 비디오를 만들기 시작해요…",
                "video_progress": "🎬 비디오를 만드는 중: {stage}, {elapsed} 지났어요.",
                "video_done": "🎬 비디오가 완성됐어요 ({seconds}).",
                "video_link": "🎬 비디오가 완성됐어요 ({seconds}): {url}",
                "video_too_large": "🎬 비디오가 완성됐지만 여기에 올리기엔 너무 커요.",
                "image_title": "요청하신 이미지",
                "picture_type": "🖼️ 이 첨부 파일은 쓸 수 없어요. {kinds} 이미지를 첨부해 주세요.",
                "picture_too_large": (
                    "🖼️ 이 사진은 {size}예요. {limit}까지만 받을 수 있어요. "
                    "더 작은 사진을 첨부해 주세요."
                ),
                "strength_needs_picture": (
                    "🖼️ `강도`는 사진을 얼마나 바꿀지 정해요. `사진`에 사진을 첨부해 주세요."
                ),
                "delivered_late": "{mention}님, 요청하신 `/{command}` 결과예요:",
                "failed_late": "{mention}님, 요청하신 `/{command}` 명령이 실패했어요:",
                "field_provider": "제공자",
                "field_model": "모델",
                "field_seed": "시드",
                "field_time": "걸린 시간",
                "field_prompt": "프롬프트",
                "stage_queued": "대기 중",
                "stage_running": "시작됨",
                "stage_preparing": "준비 중",
                "stage_processing": "렌더링 중",
                "stage_downloading": "내려받는 중",
                "ping": "🏓 퐁! 게이트웨이 지연 시간: {shards}.\n여기서 도는 풀: {pools}.",
                "ping_shard": "샤드 {shard} {ms}",
                "status_title": "풀 상태",
                "status_line": (
                    "{state} · 작업자 {busy}/{total} · 대기 {queued}/{queue_size} · "
                    "완료 {done} · 실패 {failed}\n"
                    "p50 {p50} · p95 {p95} · 정상 키 {keys_ok}/{keys} · 바로 가능한 호출 {budget}"
                ),
                "status_missing": "이 프로세스에서 돌지 않아요",
                "status_off": "꺼짐: 키 없음",
                "instances_title": "풀이 도는 곳",
                "instances_line": "명령: {commands}\n채널: {channels}\n위치: {where}",
                "here": "이 프로세스",
                "elsewhere": "다른 프로세스 (여기 AIBOT_POOLS에 없음)",
                "ping_cluster": "살아 있는 노드: {nodes} · Redis 왕복 시간: {redis}.",
                "redis_unreachable": "연결 안 됨",
                "status_nowhere": "도는 노드가 없어요",
                "nowhere": "살아 있는 노드 없음",
                "nodes_title": "노드",
                "node_name": "🖥 {name}",
                "node_name_here": "🖥 {name} (이 프로세스)",
                "node_line": "풀: {pools}\n샤드: {shards} · 버전 {version} · 가동 {age}",
                "node_pool": "{pool} (빈자리 {free})",
                "node_more": "노드 {count}개 더",
                "state_running": "실행 중",
                "state_paused": "일시 정지",
                "state_draining": "마무리 중",
                "state_stopped": "멈춤",
                "none": "없음",
                "admin_refused": (
                    "🔒 `/관리` 명령은 서버 관리 권한이 있는 사람과 봇 관리자 역할만 쓸 수 있어요."
                ),
                "admin_pool_missing": "`{pool}` 풀은 이 프로세스에서 돌지 않아요.",
                "admin_keys_title": "풀·제공자별 키 상태",
                "admin_keys_none": "이 프로세스에는 키가 있는 풀이 없어요.",
                "admin_key_line": (
                    "`{key_id}` {state} · 호출 {calls} · 429 {limited} · 실패 {failures}"
                ),
                "admin_key_rest": " · {wait} 동안 쉬는 중",
                "admin_key_ready": "정상",
                "admin_key_busy": "사용 중",
                "admin_key_cooling": "쉬는 중",
                "admin_key_disabled": "사용 중지",
                "admin_quota_title": "이 서버의 한도",
                "admin_quota_line": (
                    "쿨다운 {cooldown} · 멤버당 하루 {quota} · 서버 전체 하루 {budget}"
                ),
                "admin_quota_unlimited": "제한 없음",
                "admin_quota_saved": "✅ `{pool}` 한도를 저장했어요.",
                "admin_quota_reset": "↩️ `{pool}` 한도를 봇 설정값으로 되돌렸어요.",
                "admin_quota_pick_pool": "한도를 바꾸려면 `풀`을 골라 주세요.",
                "admin_quota_above_bot": (
                    "⚠️ 저장하지 않았어요: 서버의 `{pool}` 하루 한도는 봇 전체 한도"
                    "(모든 서버 합계 하루 {budget})보다 클 수 없어요."
                ),
                "admin_quota_bot_budget": "{budget} (봇 전체, 모든 서버 합계)",
                "admin_paused": (
                    "⏸️ `{pool}` 풀을 멈췄어요 (이 봇이 있는 모든 서버에 적용돼요). "
                    "멤버에게는 멈췄다고 알려 주고, 진행 중인 작업은 끝까지 해요. "
                    "`/관리 재개`로 다시 시작해요."
                ),
                "admin_resumed": "▶️ `{pool}` 풀이 다시 작업을 받아요.",
                "admin_pool_state": "`{pool}` 풀은 지금 {state} 상태예요.",
                "admin_jobs_title": "이 서버의 대기·진행 중 작업",
                "admin_jobs_none": "이 서버에는 대기 중이거나 진행 중인 작업이 없어요.",
                "admin_more": "… 외 {count}개",
                "admin_job_line": "`{id}` · {state} · /{command} · <@{user}>",
                "admin_job_running": "진행 중",
                "admin_job_queued": "대기 중",
                "admin_cancelled": (
                    "✖️ 작업 `{id}`(<@{user}>님의 `/{command}`)를 취소하고 본인에게 알렸어요."
                ),
                "admin_cancel_unknown": "이 서버에 대기 중이거나 진행 중인 작업 `{id}`가 없어요.",
                "admin_cancel_late": (
                    "작업 `{id}`(<@{user}>님의 `/{command}`)는 이미 답을 보내는 중이라 "
                    "취소할 수 없어요."
                ),
                "stats_title": "이 서버의 사용량",
                "stats_today": "오늘 ({day})",
                "stats_week": "최근 {days}일",
                "stats_line": "**{pool}** · {provider}: 작업 {jobs} · 실패 {failed}",
                "stats_none": "아직 작업이 없어요.",
                "stats_top": "많이 쓴 멤버 ({days}일)",
                "stats_top_line": "{rank}. <@{user}> · 작업 {jobs}",
                "alert_key_disabled": (
                    "🔑 `{pool}` 풀의 `{provider}` 키가 비활성화됐어요: `{key_id}` ({reason}). "
                    "설정에서 키를 바꾸고 다시 시작하세요."
                ),
                "alert_no_keys": (
                    "🚫 `{pool}` 풀에 쓸 수 있는 키가 없어요: 작업이 관리 풀로 가거나 실패해요. "
                    "작동하는 키를 넣고 다시 시작하세요."
                ),
                "alert_paused": (
                    "⏸️ {guild}에서 {by} 님이 `{pool}` 풀을 일시 중지했어요. "
                    "`/관리 재개`로 다시 시작해요."
                ),
                "alert_resumed": "▶️ {guild}에서 {by} 님이 `{pool}` 풀을 다시 시작했어요.",
                "alert_provider_failing": (
                    "🔥 `{pool}` 풀에서 `{provider}`가 계속 실패해요: {seconds}초 동안 작업 "
                    "{failures}개, 성공 없음 ({reason}). 제공자 상태 페이지를 확인하세요."
                ),
                "alert_budget_server": (
                    "💸 이 서버가 오늘 `{pool}` 작업 {budget}개 중 {used}개를 썼어요 (90%). "
                    "`/관리 한도`로 예산을 바꿔요."
                ),
                "alert_budget_bot": (
                    "💸 `{pool}` 풀이 모든 서버를 합쳐 하루 예산 {budget}개 중 {used}개를 "
                    "썼어요 (90%). 다 쓰면 새 작업은 거절돼요."
                ),
                "alert_restarted": (
                    "🔄 봇이 다시 시작해서 끝나지 않은 작업 {jobs}개를 이어서 해요; "
                    "끝나면 전달돼요."
                ),
                "alert_reclaimed": (
                    "🔄 `{pool}` 워커 하나가 응답을 멈췄어요 (죽었거나 멈췄어요). {node}이(가) "
                    "끝나지 않은 작업 {jobs}개를 넘겨받았고, 끝나면 전달돼요."
                ),
                "alert_backup_failed": (
                    "💾 백업에 실패했어요: {reason}. 디스크와 `AIBOT_BACKUP_DIR`를 확인하세요."
                ),
                "alert_folded": "🔁 최근 {minutes}분 동안 같은 일이 {count}번 더 있었어요. 마지막:",
                "room_status_footer": "봇이 계속 고쳐 쓰는 메시지",
                "summary_title": "어제, {day}",
                "summary_totals": "작업 {jobs} · 실패 {failed} · 예상 비용 {cost}",
                "summary_busiest": "가장 바쁜 시간: {start}:00-{end}:00, 작업 {jobs}개",
                "summary_pools": "풀과 제공자별",
                "backup_done": (
                    "💾 백업을 만들고 검사했어요: `{path}` ({size}, {seconds}초). "
                    "직접 만든 백업은 최근 {keep}개를 남기고, 매일 백업과는 따로 세요."
                ),
                "backup_failed": "💾 백업에 실패했어요: {reason}",
                "reset_done": (
                    "🧹 이 채널에서 나눈 대화를 잊었어요. 다음 `/채팅`은 처음부터 시작해요."
                ),
                "reset_empty": "이 채널에서 잊을 대화가 없어요.",
                "answer_cut_short": "-# ✂️ 답변이 이 봇이 허용하는 길이에 닿아 여기서 끝났어요.",
                "memory_dropped": (
                    "-# 대화가 기억할 수 있는 양을 넘어서 가장 오래된 대화 {turns}개를 "
                    "잊었어요. `/초기화`로 새로 시작할 수 있어요."
                ),
                "error_bad_request": "⚠️ 이 요청은 처리할 수 없어요: {detail}",
                "bad_picture_gone": "사진을 더 이상 받을 수 없어요. 다시 첨부해 주세요",
                "bad_picture_kind": "사진이 {kinds} 이미지가 아니에요",
                "bad_picture_size": "사진이 {limit}MB보다 커요",
                "bad_picture_unread": "이곳의 이미지 서비스는 {kind} 사진으로 시작할 수 없어요",
                "bad_picture_unread_by": "{provider} 서비스는 {kind} 사진으로 시작할 수 없어요",
                "error_bad_request_plain": "⚠️ 이 요청은 처리할 수 없어요. 옵션을 확인해 주세요.",
                "error_rejected": "🚫 제공자의 안전 시스템이 거절했어요. 다른 표현으로 해 보세요.",
                "error_rate_limited": "⌛ 모든 키가 바빠요. {wait} 뒤에 다시 해 주세요.",
                "error_rate_limited_plain": "⌛ 모든 키가 바빠요. 1분 뒤에 다시 해 주세요.",
                "error_no_key": "⌛ 모든 키가 바빠요. {wait} 뒤에 다시 해 주세요.",
                "error_no_key_plain": (
                    "🔑 지금 쓸 수 있는 키가 없어요. 관리자가 확인해야 해요. 나중에 다시 해 주세요."
                ),
                "error_bad_key": (
                    "🔑 제공자가 이 봇의 모든 키를 거절했어요. 관리자가 확인해야 해요. "
                    "나중에 다시 해 주세요."
                ),
                "error_unavailable": "🔌 AI 제공자가 응답하지 않아요. 1분 뒤에 다시 해 주세요.",
                "error_incomplete": (
                    "✂️ 답변이 중간에 끊겼어요: AI 제공자가 답변을 끝내지 못했어요. 다시 해 주세요."
                ),
                "error_bad_answer": "🔌 AI 제공자가 잘못된 응답을 보냈어요. 다시 해 주세요.",
                "error_misconfigured": (
                    "⚙️ AI 제공자가 이 봇이 요청한 것(설정의 모델)을 몰라요. 관리자가 설정을 "
                    "확인해야 해요. 나중에 다시 해 주세요."
                ),
                "error_busy": (
                    "🚦 지금 바빠요: 앞에 약 {wait} 분량의 작업이 있어요. 그때 다시 해 주세요."
                ),
                "error_busy_plain": "🚦 지금 바빠요. 1분 뒤에 다시 해 주세요.",
                "error_limit_cooldown": "⏱️ 조금 천천히요: {wait} 뒤에 다시 해 주세요.",
                "error_limit_quota": (
                    "📅 오늘 `/{command}` 사용량을 다 썼어요. {wait} 뒤에 다시 쓸 수 있어요."
                ),
                "error_limit_budget": (
                    "📅 오늘 `/{command}` 예산이 다 떨어졌어요. {wait} 뒤에 다시 쓸 수 있어요."
                ),
                "error_paused": (
                    "⏸️ 관리자가 `/{command}` 명령을 잠시 멈췄어요. 나중에 다시 해 주세요."
                ),
                "error_shutting_down": "🔄 봇이 다시 시작하는 중이에요. 1분 뒤에 다시 해 주세요.",
                "error_cancelled": "✖️ 관리자가 이 요청을 취소했어요.",
                "error_internal": "⚠️ 저희 쪽에서 문제가 생겼어요. 다시 해 주세요.",
                "error_restarted": "🔄 작업 중에 봇이 다시 시작했어요. 다시 요청해 주세요.",
                "empty_prompt": "✏️ 프롬프트가 비어 있어요. 원하는 내용을 적어서 다시 해 주세요.",
                "provider_not_here": (
                    "🔧 이 봇에는 여기서 쓸 `{provider}` 키가 없어요. {offered} 중에서 고르거나 "
                    "제공자를 비워 두세요."
                ),
                "error_unreachable": "🔌 봇을 잠시 쓸 수 없어요. 잠시 뒤에 다시 해 주세요.",
                "error_gave_up": "⚠️ 이 요청은 처리할 수 없었어요. 다시 해 주세요.",
            }
        ),
    }
)

# Localized command names, for messages that name a command (`/채팅`).
_COMMAND_NAMES = (
    "chat",
    "image",
    "video",
    "ping",
    "status",
    "instances",
    "stats",
    "reset",
    "admin",
)


def language(locale: discord.Locale | str | None) -> str:
    """The language a member reads: "ko" for a Korean client, "en" otherwise."""
    return "ko" if str(locale or "").lower().startswith("ko") else "en"


def command_name(command: str, lang: str) -> str:
    """A command's name as the member sees it in their client."""
    if lang == "ko" and command in _COMMAND_NAMES:
        return COMMAND_TEXT_KO[command]
    return command


def text(lang: str, key: str, **fields: object) -> str:
    """The message `key` in `lang` (English when `lang` is unknown), filled in."""
    catalog = _TEXT.get(lang, _TEXT["en"])
    return catalog.get(key, _TEXT["en"][key]).format(**fields)


def duration(seconds: float, lang: str) -> str:
    """A short human duration: 45 s, 3 min, 2 h 5 min (Korean: 45초, 3분, 2시간 5분)."""
    total = max(1, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    h, m, s = ("시간", "분", "초") if lang == "ko" else (" h", " min", " s")
    if hours:
        parts = [(hours, h), (minutes, m)]
    elif minutes >= 10:
        parts = [(minutes, m)]
    else:
        parts = [(minutes, m), (secs, s)]
    return " ".join(f"{n}{unit}" for n, unit in parts if n)


def error_text(error: AibotError, lang: str, *, command: str = "") -> str:
    """The words a member reads for `error`: short, specific, never a traceback."""
    name = command_name(command, lang)
    kind = error.kind
    wait = error.retry_after
    if isinstance(error, LimitReached):
        scope = error.scope if error.scope in {"cooldown", "quota", "budget"} else "cooldown"
        return text(lang, f"error_limit_{scope}", wait=duration(wait or 1, lang), command=name)
    if isinstance(error, BadRequest) and error.words:
        return text(lang, "error_bad_request", detail=text(lang, error.words, **error.params))
    if kind == "bad_request":
        detail = " ".join(error.detail.split())[:300]
        if detail and detail != kind:
            return text(lang, "error_bad_request", detail=detail)
        return text(lang, "error_bad_request_plain")
    if kind in {"no_key", "rate_limited", "busy"}:
        # Without an estimate: busy for no known time, or (no_key) no key works at all.
        plain = "" if wait is not None and wait > 0 else "_plain"
        return text(lang, f"error_{kind}{plain}", wait=duration(wait or 1, lang))
    if kind in {
        "rejected",
        "bad_key",
        "unavailable",
        "incomplete",
        "bad_answer",
        "misconfigured",
        "shutting_down",
        "cancelled",
        "restarted",
        "unreachable",
        "gave_up",
    }:
        return text(lang, f"error_{kind}")
    if kind == "paused":
        return text(lang, "error_paused", command=name)
    return text(lang, "error_internal")


class Translator(app_commands.Translator):
    """Korean command names, descriptions, parameters and choices for Discord's client."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        if locale is discord.Locale.korean:
            return COMMAND_TEXT_KO.get(string.message)
        return None
