"""Human-in-the-loop feedback: a person looks at the latest generation's policies, ranks them and
says what is wrong; the words reach the next proposer and the choices the ranking."""

from rewardsmith.evaluate.ranking import rank_candidates
from rewardsmith.feedback.records import FeedbackError, FeedbackRecord, elo_ratings, load_feedback
from rewardsmith.feedback.session import Session, open_session

__all__ = ["FeedbackError", "FeedbackRecord", "Session", "elo_ratings", "load_feedback", "open_session",
           "rank_candidates"]
