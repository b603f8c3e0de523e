//! Polls and quizzes through the room, as Prebuilt runs them: a host makes a quiz, starts it,
//! guests answer, everyone who may sees the counts, the host stops it and reads the
//! leaderboard; and what is refused.

use super::*;

/// A room whose polls live in a fresh SQLite database.
fn room_with_store(tag: &str) -> (TestRoom, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("room-polls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = store::Store::open(&dir.join("platform.db")).unwrap();
    let mut t = test_room();
    t.room.env.store = Some(Arc::new(Mutex::new(db)));
    (t, dir)
}

fn quiz() -> Value {
    json!([
        { "question": { "index": 1, "text": "Capital of France?", "type": "single-choice" },
          "options": [{ "index": 1, "text": "Lyon" }, { "index": 2, "text": "Paris" }],
          "answer": { "hidden": false, "option": 2 } },
        { "question": { "index": 2, "text": "Say hi", "type": "short-answer", "skippable": true },
          "answer": { "hidden": false } },
    ])
}

#[tokio::test]
async fn a_quiz_is_made_started_answered_counted_stopped_and_ranked() {
    let (mut t, dir) = room_with_store("quiz");
    let mut host = t.join("host1", "host").await;
    let mut ann = t.join("ann", "guest").await;
    let mut bob = t.join("bob", "guest").await;
    let _ = (pushes(&mut host, ""), pushes(&mut ann, ""), pushes(&mut bob, ""));

    t.request("host1", "i", "poll-info-set", json!({ "poll_id": "quiz-1", "title": "Capitals", "type": "quiz" })).await;
    assert_eq!(response(&mut host, "i")["result"]["poll_id"], "quiz-1");
    t.request("host1", "q", "poll-questions-set", json!({ "poll_id": "quiz-1", "questions": quiz() })).await;
    assert_eq!(response(&mut host, "q")["result"]["total_questions"], 2);
    // A guest may neither read the draft nor start it.
    t.request("ann", "d", "poll-questions-get", json!({ "poll_id": "quiz-1", "index": 0, "count": 50 })).await;
    assert_eq!(response(&mut ann, "d")["error"]["code"], code::FORBIDDEN);
    t.request("ann", "s", "poll-start", json!({ "poll_id": "quiz-1" })).await;
    assert_eq!(response(&mut ann, "s")["error"]["code"], code::FORBIDDEN);
    // Voting before the start is refused.
    t.request(
        "ann",
        "early",
        "poll-response",
        json!({ "poll_id": "quiz-1", "responses": [{ "question": 1, "option": 2 }] }),
    )
    .await;
    assert_eq!(response(&mut ann, "early")["error"]["code"], code::CONFLICT);

    t.request("host1", "go", "poll-start", json!({ "poll_id": "quiz-1" })).await;
    assert_eq!(response(&mut host, "go")["result"]["poll_id"], "quiz-1");
    let started = pushes(&mut ann, "on-poll-start");
    assert_eq!(
        (started[0]["polls"][0]["poll_id"].as_str(), started[0]["polls"][0]["state"].as_str()),
        (Some("quiz-1"), Some("started"))
    );
    assert_eq!(started[0]["polls"][0]["started_by"], "host1");
    // What the SDK does on on-poll-start: fetch the questions and its own responses.
    t.request("ann", "qs", "poll-questions-get", json!({ "poll_id": "quiz-1", "index": 0, "count": 50 })).await;
    let qs = response(&mut ann, "qs")["result"].clone();
    assert_eq!((qs["questions"].as_array().map(Vec::len), qs["last"].as_bool()), (Some(2), Some(true)));
    assert_eq!(qs["questions"][0]["options"][1]["text"], "Paris");

    t.request("ann", "a1", "poll-response", json!({ "poll_id": "quiz-1", "responses": [{ "question": 1, "option": 2, "duration": 4 }, { "question": 2, "text": "hi" }] })).await;
    let res = response(&mut ann, "a1")["result"].clone();
    assert_eq!(res["result"][0]["correct"], true, "{res}");
    let stats = pushes(&mut host, "on-poll-stats");
    assert_eq!(stats.last().unwrap()["polls"][0]["questions"][0]["options"], json!([0, 1]), "{stats:?}");
    assert_eq!(stats.last().unwrap()["polls"][0]["max_user"], 3);
    t.request("bob", "b1", "poll-response", json!({ "poll_id": "quiz-1", "responses": [{ "question": 1, "option": 1 }, { "question": 2, "skipped": true }] })).await;
    assert_eq!(response(&mut bob, "b1")["result"]["result"][0]["correct"], false);
    // A second answer without `update` is kept out, and said so.
    t.request(
        "bob",
        "b2",
        "poll-response",
        json!({ "poll_id": "quiz-1", "responses": [{ "question": 1, "option": 2 }] }),
    )
    .await;
    assert_eq!(response(&mut bob, "b2")["result"]["result"][0]["error"]["code"], code::CONFLICT);
    for (id, bad) in [("x1", json!({ "question": 1, "option": 9 })), ("x2", json!({ "question": 7, "option": 1 }))] {
        t.request("bob", id, "poll-response", json!({ "poll_id": "quiz-1", "responses": [bad] })).await;
        assert_eq!(response(&mut bob, id)["error"]["code"], code::BAD_REQUEST);
    }

    // Own responses for anyone; everyone's for a reader (guests have pollRead here).
    t.request("bob", "mine", "poll-responses", json!({ "poll_id": "quiz-1", "index": 0, "count": 50, "self": true }))
        .await;
    let mine = response(&mut bob, "mine")["result"].clone();
    assert_eq!(mine["responses"].as_array().map(Vec::len), Some(2));
    assert_eq!(mine["responses"][0]["peer"]["peerid"], "bob");
    t.request("host1", "r", "poll-result", json!({ "poll_id": "quiz-1" })).await;
    let result = response(&mut host, "r")["result"].clone();
    assert_eq!((result["user_count"].as_u64(), result["total_response"].as_u64()), (Some(2), Some(4)));

    t.request("host1", "stop", "poll-stop", json!({ "poll_id": "quiz-1" })).await;
    assert_eq!(response(&mut host, "stop")["result"]["poll_id"], "quiz-1");
    assert_eq!(pushes(&mut bob, "on-poll-stop")[0]["polls"][0]["state"], "stopped");
    t.request(
        "ann",
        "late",
        "poll-response",
        json!({ "poll_id": "quiz-1", "responses": [{ "question": 2, "text": "x" }] }),
    )
    .await;
    assert_eq!(response(&mut ann, "late")["error"]["code"], code::CONFLICT, "a stopped poll takes no votes");
    t.request("host1", "lb", "poll-leaderboard", json!({ "poll_id": "quiz-1", "count": 10, "offset": 0 })).await;
    let board = response(&mut host, "lb")["result"].clone();
    assert_eq!(board["questions"][0]["peer"]["peerid"], "ann", "{board}");
    assert_eq!((board["voted_users"].as_u64(), board["correct_users"].as_u64()), (Some(2), Some(1)));

    // The list: drafts only for pollWrite.
    t.request("host1", "draft", "poll-info-set", json!({ "title": "Lunch?", "type": "poll" })).await;
    assert!(response(&mut host, "draft")["result"]["poll_id"].is_string());
    t.request("host1", "l", "poll-list", json!({ "count": 50 })).await;
    assert_eq!(response(&mut host, "l")["result"]["polls"].as_array().map(Vec::len), Some(2));
    t.request("ann", "l2", "poll-list", json!({ "count": 50 })).await;
    assert_eq!(response(&mut ann, "l2")["result"]["polls"].as_array().map(Vec::len), Some(1));
    // The started quiz cannot be rewritten.
    t.request("host1", "re", "poll-info-set", json!({ "poll_id": "quiz-1", "title": "x", "type": "quiz" })).await;
    assert_eq!(response(&mut host, "re")["error"]["code"], code::CONFLICT);
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_polls_are_refused_and_a_role_outside_vote_may_not_vote() {
    let (mut t, dir) = room_with_store("bad");
    let mut host = t.join("host1", "host").await;
    let mut ann = t.join("ann", "guest").await;
    let _ = (pushes(&mut host, ""), pushes(&mut ann, ""));
    for (id, params) in [
        ("b1", json!({ "title": "", "type": "poll" })),
        ("b2", json!({ "title": "t", "type": "survey" })),
        ("b3", json!({ "poll_id": "../x", "title": "t" })),
    ] {
        t.request("host1", id, "poll-info-set", params).await;
        assert_eq!(response(&mut host, id)["error"]["code"], code::BAD_REQUEST, "{id}");
    }
    t.request("host1", "p", "poll-info-set", json!({ "poll_id": "p1", "title": "Hosts only", "vote": ["host"] })).await;
    response(&mut host, "p");
    t.request("host1", "e", "poll-start", json!({ "poll_id": "p1" })).await;
    assert_eq!(response(&mut host, "e")["error"]["code"], code::BAD_REQUEST, "no questions yet");
    t.request("host1", "bq", "poll-questions-set", json!({ "poll_id": "p1", "questions": [{ "question": { "text": "?", "type": "single-choice" }, "options": [{ "text": "one" }] }] })).await;
    assert_eq!(response(&mut host, "bq")["error"]["code"], code::BAD_REQUEST, "one option is not a choice");
    t.request("host1", "q", "poll-questions-set", json!({ "poll_id": "p1", "questions": quiz() })).await;
    response(&mut host, "q");
    t.request("host1", "s", "poll-start", json!({ "poll_id": "p1" })).await;
    response(&mut host, "s");
    t.request("ann", "v", "poll-response", json!({ "poll_id": "p1", "responses": [{ "question": 1, "option": 1 }] }))
        .await;
    assert_eq!(response(&mut ann, "v")["error"]["code"], code::FORBIDDEN);
    t.request("ann", "n", "poll-info-get", json!({ "poll_id": "nope" })).await;
    assert_eq!(response(&mut ann, "n")["error"]["code"], code::NOT_FOUND);
    drop(t);
    let _ = std::fs::remove_dir_all(&dir);
}
