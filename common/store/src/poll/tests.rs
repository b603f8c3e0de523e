use serde_json::json;

use super::check::{check_info, check_questions, check_response, leaderboard, results};
use super::*;
use crate::test_support::backends;

fn quiz(ws: &str, room: &str) -> Poll {
    let mut errors = Vec::new();
    let info = check_info(&json!({ "title": "Capitals", "type": "quiz", "vote": ["guest"] }), &mut errors);
    let questions = check_questions(
        &json!([
            { "question": { "text": "Capital of France?", "type": "single-choice", "weight": 2 },
              "options": [{ "text": "Lyon" }, { "text": "Paris" }], "answer": { "option": 2 } },
            { "question": { "text": "Pick the primes", "type": "multiple-choice", "skippable": true },
              "options": [{ "text": "2" }, { "text": "4" }, { "text": "5" }], "answer": { "options": [3, 1] } },
            { "question": { "text": "Say hi", "type": "short-answer" }, "answer": { "text": "Hi", "trim": true } },
        ]),
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    Poll {
        id: String::new(),
        workspace_id: ws.into(),
        room_id: room.into(),
        state: CREATED.into(),
        info,
        questions,
        session_id: String::new(),
        created_by: "host1".into(),
        started_by: String::new(),
        stopped_by: String::new(),
        created_at: 0,
        started_at: 0,
        stopped_at: 0,
    }
}

fn response(p: &Poll, peer: &str, r: serde_json::Value) -> PollResponse {
    let (question, body) = check_response(p, &r).unwrap();
    PollResponse {
        id: String::new(),
        poll_id: p.id.clone(),
        session_id: "s1".into(),
        peer_id: peer.into(),
        user_id: format!("u-{peer}"),
        username: peer.to_uppercase(),
        question,
        body,
        created_at: 0,
    }
}

#[test]
fn a_quiz_runs_once_scores_its_answers_and_counts_its_votes() {
    for b in backends("polls") {
        let s = &b.store;
        let p = s.save_poll(&quiz("ws", "r1")).unwrap().unwrap();
        assert!(!p.id.is_empty());
        assert!(p.may_vote("guest") && !p.may_vote("host") && p.may_see_responses("host"));
        // A draft may be rewritten; a started one may not, and stops only once.
        let retitled = Poll {
            info: check_info(&json!({ "title": "Capitals!", "type": "quiz", "vote": ["guest"] }), &mut Vec::new()),
            ..p.clone()
        };
        assert_eq!(s.save_poll(&retitled).unwrap().unwrap().info["title"], "Capitals!");
        let started = s.move_poll(&p.id, "r1", "s1", CREATED, STARTED, "host1").unwrap().unwrap();
        assert_eq!((started.state.as_str(), started.started_by.as_str()), (STARTED, "host1"));
        assert!(s.save_poll(&retitled).unwrap().is_none(), "a started poll is not rewritten");
        assert!(s.move_poll(&p.id, "other-room", "s1", STARTED, STOPPED, "x").unwrap().is_none());

        let answers = [
            ("ann", json!({ "question": 1, "option": 2, "duration": 3 })),
            ("ann", json!({ "question": 2, "options": [1, 3] })),
            ("ann", json!({ "question": 3, "text": "  hi " })),
            ("bob", json!({ "question": 1, "option": 1, "duration": 1 })),
            ("bob", json!({ "question": 2, "skipped": true })),
        ];
        for (peer, a) in answers {
            assert!(matches!(s.answer_poll(&response(&started, peer, a), false, false).unwrap(), Answered::Stored(_)));
        }
        let again = response(&started, "bob", json!({ "question": 1, "option": 2 }));
        assert_eq!(s.answer_poll(&again, false, false).unwrap(), Answered::AlreadyAnswered);
        assert!(matches!(s.answer_poll(&again, true, false).unwrap(), Answered::Stored(_)), "an update replaces it");
        assert_eq!(s.answer_poll(&again, true, true).unwrap(), Answered::AlreadyAnswered, "not on a once question");

        let all = s.poll_responses(&p.id, None).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(s.poll_responses(&p.id, Some("bob")).unwrap().len(), 2);
        let r = results(&started, &all, 3);
        assert_eq!(
            (r["user_count"].as_u64(), r["total_response"].as_u64(), r["max_user"].as_u64()),
            (Some(2), Some(5), Some(3))
        );
        assert_eq!(r["questions"][0]["options"], json!([0, 2]), "bob changed his answer to Paris");
        assert_eq!(r["questions"][0]["correct"], 2);
        assert_eq!((r["questions"][1]["skipped"].as_u64(), r["questions"][1]["correct"].as_u64()), (Some(1), Some(1)));
        assert_eq!(r["questions"][2]["correct"], 1, "trimmed and case-blind");
        let board = leaderboard(&started, &all, 0, 10);
        assert_eq!(board["questions"][0]["peer"]["peerid"], "ann");
        assert_eq!(board["questions"][0]["score"], 4, "2 for the weighted question, 1 each for the others");
        assert_eq!(board["questions"][1]["score"], 2);
        assert_eq!(board["last"], true);

        let stopped = s.move_poll(&p.id, "r1", "s1", STARTED, STOPPED, "host1").unwrap().unwrap();
        assert!(stopped.stopped_at >= stopped.started_at);
        let listed = s.room_polls("ws", "r1", &[], Some(STOPPED)).unwrap();
        assert_eq!(listed.len(), 1);
        // A REST poll shows in a room only when the room lists it.
        let rest = s.save_poll(&quiz("ws", "")).unwrap().unwrap();
        assert_eq!(s.room_polls("ws", "r1", &[], Some(CREATED)).unwrap().len(), 0);
        assert_eq!(s.room_polls("ws", "r1", std::slice::from_ref(&rest.id), Some(CREATED)).unwrap().len(), 1);
    }
}

#[test]
fn bad_polls_questions_and_responses_are_refused_with_reasons() {
    let mut errors = Vec::new();
    check_info(
        &json!({ "title": "", "type": "survey", "duration": -1, "vote": "host", "anonymous": "yes" }),
        &mut errors,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["title", "type", "anonymous", "duration", "vote"]);
    let mut errors = Vec::new();
    check_questions(
        &json!([
            { "question": { "text": "", "type": "single-choice" }, "options": [{ "text": "only" }] },
            { "question": { "text": "q", "type": "essay" } },
            { "question": { "text": "q", "type": "single-choice" }, "options": [{ "text": "a" }, { "text": "b" }], "answer": { "option": 3 } },
        ]),
        &mut errors,
    );
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["questions[0].text", "questions[0].options", "questions[1].type", "questions[2].answer.option"]
    );
    let p = quiz("ws", "r");
    for bad in [
        json!({ "question": 9, "option": 1 }),
        json!({ "question": 1, "option": 3 }),
        json!({ "question": 1, "skipped": true }),
        json!({ "question": 2, "options": [1, 7] }),
        json!({ "question": 3 }),
        json!({ "option": 1 }),
    ] {
        assert!(check_response(&p, &bad).is_err(), "{bad}");
    }
}
