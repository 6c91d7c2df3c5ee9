"""peer_review/export.py: a learner's peer-review history in their data export.

Built through the real actions: two attempts (one with a file), a near-duplicate finding,
calibration, reviews both ways with a rating and a flag, the grade computed by the outbox, and
staff interventions. Review is blind both ways, so classmates never get the export's
"Person N" pseudonyms, and nobody else's name, email or work shows up.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from core import actions as core_actions
from core.export import ExportContext
from core.models import Course, Role, User
from core.settings import Settings
from moderation import export as moderation_export
from moderation import log
from moderation.models import Act, LogEntry
from peer_review import actions, export
from peer_review.attachments import Upload
from peer_review.models import (
    Assignment,
    CalibrationAnswer,
    Grade,
    Review,
    SimilarityFlag,
    Submission,
)
from peer_review.queries import load_rubric
from tests.conftest import drain_jobs
from tests.factories import PASSWORD, add_member, make_course, reuse_password_hashes
from tests.peer_review.factories import (
    COMMENT,
    Cast,
    Clock,
    answers_at,
    essay,
    make_assignment,
)

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
COPIED_TAIL = "These closing words are the copier's own."
FLAG_REASON = "It marks down a section my essay does include."


async def person(username: str, display_name: str) -> User:
    return await core_actions.create_user(
        username=username,
        display_name=display_name,
        password=PASSWORD,
        email=f"{username}@mail.example",
        acting_user=None,
    )


@dataclass(slots=True)
class World:
    course: Course
    instructor: User
    mentor: User
    ali: User
    classmates: list[User]
    assignment: Assignment
    attempts: list[Submission]  # ali's, oldest first
    copier: Submission
    given: list[Review]  # ali's reviews
    received: list[Review]  # reviews of ali's current attempt, oldest first
    entries: dict[str, LogEntry]


@pytest.fixture
async def world(db: Settings, monkeypatch: pytest.MonkeyPatch, clock: Clock) -> World:
    reuse_password_hashes(monkeypatch)
    instructor = await person("ingridvance", "Ingrid Vance")
    course = await make_course(instructor, title="Scientific writing")
    mentor = await person("morwennaquill", "Morwenna Quill")
    await add_member(course, mentor, Role.MENTOR)
    ali = await person("alibaxter", "Ali Baxter")
    classmates = [
        await person(name, name.title())
        for name in ("leaquillon", "bothistle", "carysdunmore", "dariuspenhallow")
    ]
    for learner in (ali, *classmates):
        await core_actions.join_course(
            course=course, invite_code=course.invite_code, acting_user=learner
        )
    cast = Cast(course, instructor, mentor, [ali, *classmates], await person("ottoout", "Otto"))
    assignment = await make_assignment(
        cast,
        clock.now,
        publish=False,
        calibration_required=1,
        reviews_wanted=3,
        reviews_required=3,
    )
    rubric = await load_rubric(assignment.id)
    sample = await actions.add_calibration_sample(
        assignment,
        title="A sample essay",
        body=essay(7),
        reference=answers_at(rubric, [2, 1]),
        acting_user=instructor,
    )
    await actions.publish_assignment(assignment, acting_user=instructor)

    first = await actions.submit(
        assignment, body=essay(1, 150), uploads=[Upload("notes.pdf", PDF)], acting_user=ali
    )
    clock.advance(minutes=5)
    second = await actions.submit(assignment, body=essay(2, 150), acting_user=ali)
    copier = await actions.submit(
        assignment, body=essay(2, 150) + "\n\n" + COPIED_TAIL, acting_user=classmates[0]
    )
    for i, learner in enumerate(classmates[1:], start=3):
        await actions.submit(assignment, body=essay(i, 150), acting_user=learner)
    await drain_jobs()
    for learner in (ali, *classmates):
        positions = [3, 1] if learner.id == ali.id else [2, 1]
        await actions.grade_calibration_sample(
            sample, answers=answers_at(rubric, positions), acting_user=learner
        )
    for _ in range(3):
        clock.advance(minutes=1)
        for learner in (ali, *classmates):
            review = await actions.review_next(assignment, acting_user=learner)
            assert review is not None
            await actions.submit_review(
                review, answers=answers_at(rubric, [2, 1]), overall=COMMENT, acting_user=learner
            )
    await drain_jobs()

    given = list(await Review.filter(reviewer_id=ali.id).order_by("leased_at", "id"))
    received = list(await Review.filter(submission_id=second.id).order_by("submitted_at", "id"))
    await actions.rate_review(received[0], helpfulness=4, acting_user=ali)
    await actions.flag_review(received[1], reason=FLAG_REASON, acting_user=ali)
    entries = {
        "uphold": await actions.uphold_review(
            await Review.get(id=received[1].id),
            reason="The review reads the essay fairly.",
            acting_user=mentor,
        ),
        "void": await actions.void_review(
            given[0], reason="The review scores the wrong essay entirely.", acting_user=mentor
        ),
        "plagiarism": await actions.decide_similarity(
            await SimilarityFlag.get(submission_a_id=second.id),
            confirmed=True,
            responsible=[copier.id],
            reason="The second essay repeats the first word for word.",
            acting_user=instructor,
        ),
    }
    await actions.override_grade(
        second, percent=91.5, reason="Credit for the revised argument.", acting_user=instructor
    )
    entries["override"] = await LogEntry.get(act=Act.OVERRIDE_GRADE.value)
    await drain_jobs()
    return World(
        course,
        instructor,
        mentor,
        ali,
        classmates,
        assignment,
        [first, second],
        copier,
        [await Review.get(id=r.id) for r in given],
        [await Review.get(id=r.id) for r in received],
        entries,
    )


async def export_of(user: User) -> tuple[dict[str, Any], ExportContext]:
    ctx = ExportContext(user=await User.get(id=user.id))
    result = await export.sections(ctx)
    return json.loads(json.dumps(result)), ctx


async def test_every_attempt_with_its_file_and_near_duplicate_finding(world: World) -> None:
    result, ctx = await export_of(world.ali)
    submissions = result["peer_review"]["submissions"]
    assert [s["attempt"] for s in submissions] == [1, 2]
    first, second = submissions
    stored_first, stored_second = world.attempts
    assert first["text_markdown"] == stored_first.body_markdown
    assert first["submitted_at"] == log.timestamp(stored_first.submitted_at)
    assert first["is_current"] is False
    assert first["superseded_at"] == log.timestamp(stored_second.submitted_at)
    assert second["is_current"] is True and second["superseded_at"] is None
    assert first["assignment"]["title"] == "Essay one"
    assert first["assignment"]["course"]["title"] == "Scientific writing"
    (attachment,) = first["attachments"]
    assert attachment["filename"] == "notes.pdf"
    assert attachment["size_bytes"] == len(PDF)
    assert attachment["sha256"] == hashlib.sha256(PDF).hexdigest()
    assert second["attachments"] == []
    assert first["near_duplicate_findings"] == []
    (finding,) = second["near_duplicate_findings"]
    flag = await SimilarityFlag.get(submission_a_id=stored_second.id)
    assert finding["similarity"] == flag.similarity > 0.8
    assert finding["state"] == "confirmed"
    assert finding["you_were_found_to_have_copied"] is False
    assert finding["decided_by"] == ctx.pseudonym(world.instructor.id)
    assert finding["decided_at"] == log.timestamp(world.entries["plagiarism"].created_at)
    assert finding["decision_log_index"] == world.entries["plagiarism"].seq
    assert len(second["near_duplicate_signature"]) > 0


async def test_reviews_given_and_received_with_scores_ratings_and_flags(world: World) -> None:
    result, _ = await export_of(world.ali)
    section = result["peer_review"]
    given = section["reviews_given"]
    assert [g["id"] for g in given] == [r.id for r in world.given]
    assert [g["of"] for g in given] == ["Author 1", "Author 2", "Author 3"]
    voided = given[0]
    assert voided["status"] == "voided"
    assert voided["voided_at"] == log.timestamp(world.entries["void"].created_at)
    for item, review in zip(given, world.given, strict=True):
        assert item["submitted_at"] == log.timestamp(review.submitted_at)  # type: ignore[arg-type]
        assert [(s["criterion"], s["level"], s["points"]) for s in item["scores"]] == [
            ("Argument", "Good", 2),
            ("Clarity", "Mostly clear", 1),
        ]
        assert item["scores"][0]["comment"] == COMMENT
        assert item["overall_comment"] == COMMENT
        assert item["draft"] is None

    received = section["reviews_received"]
    current = [r for r in received if r["submission_id"] == world.attempts[1].id]
    assert [r["id"] for r in current] == [r.id for r in world.received]
    assert [r["reviewer"] for r in current] == ["Reviewer 1", "Reviewer 2", "Reviewer 3"]
    assert current[0]["your_helpfulness_rating"] == 4
    assert current[1]["submitted_at"] == log.timestamp(world.received[1].submitted_at)  # type: ignore[arg-type]
    assert current[1]["scores"][1] == {
        "criterion": "Clarity",
        "level": "Mostly clear",
        "points": 1,
        "comment": COMMENT,
    }
    (flag,) = section["review_flags"]
    assert flag["review_id"] == world.received[1].id
    assert flag["reviewer"] == "Reviewer 2"
    assert flag["reason"] == FLAG_REASON
    assert flag["state"] == "upheld"
    assert flag["flagged_at"] == log.timestamp(world.received[1].flagged_at)  # type: ignore[arg-type]
    assert flag["decision_log_index"] == world.entries["uphold"].seq


async def test_calibration_grades_and_reviewer_estimates_are_explained(world: World) -> None:
    result, _ = await export_of(world.ali)
    section = result["peer_review"]
    (calibration,) = section["calibration"]
    answer = await CalibrationAnswer.get(learner_id=world.ali.id)
    assert calibration["agreement_rate"] == answer.agreement_rate == 0.5
    assert calibration["graded_at"] == log.timestamp(answer.created_at)
    assert calibration["sample"] == "A sample essay"
    argument, clarity = calibration["criteria"]
    assert (argument["your_level"], argument["instructor_level"]) == ("Excellent", "Good")
    assert argument["levels_apart"] == 1
    assert argument["instructor_explanation"] == COMMENT
    assert clarity["levels_apart"] == 0

    grades = section["derived"]["grades"]
    stored = await Grade.get(submission_id=world.attempts[1].id)
    (grade,) = grades
    assert grade["submission_id"] == world.attempts[1].id
    assert grade["final_percent"] == 91.5 and grade["source"] == "override"
    assert grade["peer_percent"] == stored.peer_percent is not None
    low, high = grade["peer_interval_90_percent"]
    assert low <= grade["peer_percent"] <= high
    assert grade["reviews_counted"] == 3
    assert grade["computed_at"] == log.timestamp(stored.computed_at)
    assert grade["explanation"] == "Your grade is 7.3 of 8, set by an instructor."
    assert set(grade["median_points_per_criterion"]) == {"Argument", "Clarity"}

    (estimate,) = section["derived"]["reviewer_estimates"]
    assert estimate["model"] == "calibrated"
    assert 0 < estimate["reliability"] < 1
    assert estimate["reviews_counted"] == 2  # the voided review no longer counts
    assert estimate["calibration_samples_counted"] == 1
    assert "calibration sample" in estimate["explanation"]


async def test_staff_interventions_on_the_learners_work(world: World) -> None:
    result, ctx = await export_of(world.ali)
    interventions = result["peer_review"]["staff_interventions"]
    by_act = {i["act"]: i for i in interventions}
    assert set(by_act) == {
        Act.UPHOLD_REVIEW.value,
        Act.VOID_REVIEW.value,
        Act.PLAGIARISM_DECISION.value,
        Act.OVERRIDE_GRADE.value,
    }
    for name, entry in world.entries.items():
        item = by_act[entry.act]
        assert item["at"] == log.timestamp(entry.created_at), name
        assert item["log_index"] == entry.seq
        assert item["reason"] == entry.reason
    assert by_act[Act.OVERRIDE_GRADE.value]["percent"] == 91.5
    assert by_act[Act.OVERRIDE_GRADE.value]["by"] == ctx.pseudonym(world.instructor.id)
    assert by_act[Act.VOID_REVIEW.value]["on"] == "your review of a classmate's submission"
    assert by_act[Act.VOID_REVIEW.value]["by"] == ctx.pseudonym(world.mentor.id)
    assert by_act[Act.UPHOLD_REVIEW.value]["on"] == "a classmate's review of your submission"
    assert by_act[Act.PLAGIARISM_DECISION.value]["outcome"] == "confirmed"


async def test_classmates_stay_anonymous_and_unnamed(world: World) -> None:
    # As in the real export: one context shared by the sections.
    ctx = ExportContext(user=await User.get(id=world.ali.id))
    result = {**await export.sections(ctx), **await moderation_export.sections(ctx)}
    text = json.dumps(result, ensure_ascii=False)
    descriptions = {
        e["act"]: e["target"]["description"] for e in result["moderation"]["log_entries"]
    }
    assert descriptions[Act.UPHOLD_REVIEW.value] == (
        "a classmate's review of your submission for “Essay one”"
    )
    assert descriptions[Act.VOID_REVIEW.value] == (
        "your review of a classmate's submission for “Essay one”"
    )
    assert descriptions[Act.PLAGIARISM_DECISION.value] == (
        "a near-duplicate finding about your submission for “Essay one”"
    )
    assert descriptions[Act.OVERRIDE_GRADE.value] == "your submission (attempt 2 at “Essay one”)"
    lowered = text.lower()
    for other in (world.instructor, world.mentor, *world.classmates):
        for value in (other.username, other.display_name, other.email):
            assert value and value.lower() not in lowered, f"{value!r} appears in the export"
    # Only staff get export-wide pseudonyms; reviewers and authors get local labels.
    staff = {ctx.pseudonym(world.instructor.id), ctx.pseudonym(world.mentor.id)}
    assert set(re.findall(r"Person \d+", text)) == staff
    # No classmate's work is copied into the export.
    assert COPIED_TAIL not in text
    for classmate in world.classmates[1:]:
        body = (await Submission.get(author_id=classmate.id)).body_markdown
        assert body[:60] not in text


async def test_the_copiers_export_says_they_were_found_to_have_copied(world: World) -> None:
    result, _ = await export_of(world.classmates[0])
    (submission,) = result["peer_review"]["submissions"]
    (finding,) = submission["near_duplicate_findings"]
    assert finding["you_were_found_to_have_copied"] is True
    assert "Ali Baxter" not in json.dumps(result)


async def test_a_review_in_progress_keeps_its_draft(world: World, clock: Clock) -> None:
    second = await make_assignment(
        Cast(world.course, world.instructor, world.mentor, [world.ali], world.ali),
        clock.now,
        title="Essay two",
    )
    await actions.submit(second, body=essay(40), acting_user=world.classmates[1])
    await actions.submit(second, body=essay(41), acting_user=world.ali)
    review = await actions.review_next(second, acting_user=world.ali)
    assert review is not None
    rubric = await load_rubric(second.id)
    await actions.save_review_draft(
        review,
        answers=answers_at(rubric, [0, 2], comment="Half written."),
        overall="Not finished",
        acting_user=world.ali,
    )
    result, _ = await export_of(world.ali)
    (draft,) = [r for r in result["peer_review"]["reviews_given"] if r["status"] == "leased"]
    assert draft["assignment"]["title"] == "Essay two"
    assert draft["submitted_at"] is None and draft["scores"] == []
    assert draft["handed_out_at"] == log.timestamp(review.leased_at)
    assert draft["draft"] == {
        "answers": [
            {"criterion": "Argument", "levels": ["Missing"], "comment": "Half written."},
            {"criterion": "Clarity", "levels": ["Clear"], "comment": "Half written."},
        ],
        "overall_comment": "Not finished",
    }
    locked = {
        s["assignment"]["title"]: s["locked_at"] for s in result["peer_review"]["submission_locked"]
    }
    assert locked["Essay two"] == log.timestamp(review.leased_at)


async def test_staff_see_their_grading_and_a_newcomer_gets_empty_lists(world: World) -> None:
    result, ctx = await export_of(world.instructor)
    staff = result["peer_review"]["as_staff"]
    (override,) = staff["grade_overrides_made"]
    assert override["percent"] == 91.5
    assert override["author"] == ctx.pseudonym(world.ali.id)
    assert "Ali Baxter" not in json.dumps(result)

    newcomer = await person("nobodyhere", "Nobody Here")
    empty, _ = await export_of(newcomer)
    section = empty["peer_review"]
    for key in (
        "submissions",
        "reviews_given",
        "reviews_received",
        "review_flags",
        "calibration",
        "staff_interventions",
    ):
        assert section[key] == [], key
    assert section["derived"] == {"grades": [], "reviewer_estimates": []}
