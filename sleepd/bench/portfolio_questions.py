"""Portfolio questions in a user's own words: the second wording of the contracts corpus's
cross-contract questions, beside the template "Which contracts have a <category> clause?".

Each question asks about a CUAD category without naming it, the way someone who owns the contracts
would ask; its gold is the same as the template's (every contract whose CUAD column holds a
clause). They were written once, by hand, before the aggregates' descriptions were, and are not
tuned: a system that only matches category names scores near zero on them.
"""

from __future__ import annotations

__all__ = ["PARAPHRASED"]

#: (CUAD category column, the question)
PARAPHRASED: tuple[tuple[str, str], ...] = (
    ("Renewal Term", "Which of our contracts renew automatically, and for what period?"),
    ("Notice Period To Terminate Renewal",
     "Where do we have to warn the other side ahead of time if we don't want the deal to roll over?"),
    ("Governing Law", "Which agreements say what state's or country's law applies if there is a dispute?"),
    ("Most Favored Nation", "In which deals are we promised prices at least as good as any other customer gets?"),
    ("Non-Compete", "Which agreements stop a party from going into business against the other?"),
    ("Exclusivity", "Which contracts tie us to one partner, so we can't buy from or sell through anyone else?"),
    ("No-Solicit Of Employees", "Where are we barred from poaching the other company's staff?"),
    ("Termination For Convenience", "Which agreements can be walked away from at any time without a reason?"),
    ("Change Of Control", "If one of the companies gets bought, which contracts let the other side get out?"),
    ("Anti-Assignment", "Which contracts can't be handed over to another company without permission?"),
    ("Revenue/Profit Sharing", "Which deals have us splitting sales or paying royalties to the other party?"),
    ("Minimum Commitment", "Where do we have to buy at least a certain quantity every year?"),
    ("Ip Ownership Assignment", "Which contracts hand ownership of what gets invented over to the other side?"),
    ("Audit Rights", "Which counterparties are allowed to come and check our accounts?"),
    ("Cap On Liability", "Which agreements limit how much either side can be made to pay if things go wrong?"),
    ("Insurance", "Which contracts make a party carry coverage, and how much?"),
    ("Warranty Duration", "How long do the product guarantees in our agreements last?"),
    ("Post-Termination Services", "Which contracts keep us on the hook after they end, for example to help "
                                  "with a hand-over?"),
)
