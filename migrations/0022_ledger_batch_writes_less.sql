-- What a batch writes beyond its rows, made less (issue 13, decision 0032).
--
-- Profiled under the AI bench (perf, PostgreSQL's processes): after the index inserts and the
-- executor's start-up per statement, two costs stood out that buy nothing.
--
-- 1. The transfers' key to users. Each row a batch appends ran the key's check: a query per row
--    that locks the user's row (FOR KEY SHARE: a dirtied page and a WAL record per batch and user).
--    Every writer of transfers names the user whose account it has just read (ledger.user_account,
--    the authenticated call's user, the purchase's buyer), users are never deleted or renumbered
--    (migration 0019's triggers), and `tollgate reconcile` now reports a transfer naming a user that
--    does not exist, as it reports one naming an account or hold that does not exist (0016 dropped
--    those keys for the same reason). Measured alone: -6% of PostgreSQL's CPU per AI call.
-- 2. ledger_batch read its written rows back through text: `array_agg(rows)` of the INSERT's
--    RETURNING * is an array of an anonymous row type, and assigning it to `written transfers[]`
--    converted every element with record_out and record_in. RETURNING the table's own row type keeps
--    it typed; the keys come back in the same statement and are compared as one array, not one item
--    at a time. Everything else in the function is 0019's, word for word (its SET clause, 0021's,
--    is now in its definition).

ALTER TABLE transfers DROP CONSTRAINT transfers_user_id_fkey;

CREATE OR REPLACE FUNCTION ledger_batch(p_items jsonb)
RETURNS TABLE (item_index integer, status text, detail text, transfer transfers)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    x record;
    n integer := jsonb_array_length(p_items);
    -- Answers, per item (1-based): status, detail, the transfer found by key before the batch, the
    -- position of its transfer among the rows this batch writes.
    a_status text[] := array_fill(NULL::text, ARRAY[n]);
    a_detail text[] := array_fill(NULL::text, ARRAY[n]);
    a_found transfers[] := array_fill(NULL::transfers, ARRAY[n]);
    a_written integer[] := array_fill(NULL::integer, ARRAY[n]);
    -- The locked accounts, by id, and their sums as the items leave them.
    a_ids bigint[];
    a_kinds text[];
    a_overdrafts bigint[];
    a_owed bigint[];
    a_debits_posted bigint[];
    a_credits_posted bigint[];
    a_debits_pending bigint[];
    a_credits_pending bigint[];
    a_changed boolean[];
    -- The locked budgets, by id.
    b_ids bigint[];
    b_is_key boolean[];
    b_periods text[];
    b_limits bigint[];
    b_spent bigint[];
    b_held bigint[];
    b_starts timestamptz[];
    b_changed boolean[];
    -- The transfers to write, a row each (id left to the insert); t_keys, their keys, doubles as the
    -- keys this batch wrote.
    t_rows transfers[] := '{}';
    t_keys text[] := '{}';
    written transfers[];
    written_keys text[];  -- their keys, in the same order
    -- Budget links to write (position in t_* of the hold, its budgets as text) and to drop.
    l_positions integer[] := '{}';
    l_budgets text[] := '{}';
    l_amounts bigint[] := '{}';
    l_dropped bigint[] := '{}';
    usages jsonb[] := '{}';
    resolved bigint[] := '{}';  -- holds resolved by this batch
    fit integer[];  -- positions in b_ids of the budgets a hold is checked against (then charged),
    fit_ids bigint[];  -- and their ids (in id order, as budgets_to_fit)
    d integer;
    c integer;
    k integer;
    bix integer;
    budget_id bigint;
    v_hash bytea;
    v_posting boolean;
    v_posted bigint;
    v_window timestamptz;
BEGIN
    -- 1. Lock every account of the batch, by id.
    WITH elements AS (SELECT value AS e FROM jsonb_array_elements(p_items)),
    holds AS (SELECT t.debit_account_id, t.credit_account_id FROM transfers t
              WHERE t.id = ANY(ARRAY(SELECT (e->>'hold_id')::bigint FROM elements WHERE e->>'op' = 'resolve'))),
    wanted AS (SELECT (e->>'debit')::bigint AS id FROM elements WHERE e->>'op' = 'move'
               UNION SELECT (e->>'credit')::bigint FROM elements WHERE e->>'op' = 'move'
               UNION SELECT debit_account_id FROM holds
               UNION SELECT credit_account_id FROM holds)
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), array_agg(l.kind ORDER BY l.id),
           array_agg(l.overdraft_micro ORDER BY l.id), array_agg(l.owed_micro ORDER BY l.id),
           array_agg(l.debits_posted ORDER BY l.id), array_agg(l.credits_posted ORDER BY l.id),
           array_agg(l.debits_pending ORDER BY l.id), array_agg(l.credits_pending ORDER BY l.id),
           array_agg(false)
    INTO a_ids, a_kinds, a_overdrafts, a_owed, a_debits_posted, a_credits_posted, a_debits_pending,
         a_credits_pending, a_changed
    FROM (SELECT * FROM accounts WHERE id = ANY(ARRAY(SELECT id FROM wanted)) ORDER BY id FOR UPDATE) l;
    -- 2. Then every budget the batch may charge (its budgeted holds' users) or give back (the
    --    budgets of the holds it resolves), by id, into arrays.
    SELECT coalesce(array_agg(b.id ORDER BY b.id), '{}'), array_agg(b.api_key_id IS NOT NULL ORDER BY b.id),
           array_agg(b.period ORDER BY b.id), array_agg(b.limit_micro ORDER BY b.id),
           array_agg(b.spent_micro ORDER BY b.id), array_agg(b.held_micro ORDER BY b.id),
           array_agg(b.window_start ORDER BY b.id), array_agg(false)
    INTO b_ids, b_is_key, b_periods, b_limits, b_spent, b_held, b_starts, b_changed
    FROM (SELECT * FROM budgets
          WHERE user_id = ANY(ARRAY(SELECT (e.value->>'user_id')::bigint FROM jsonb_array_elements(p_items) e
                                    WHERE e.value->>'op' = 'move' AND (e.value->>'budgeted')::boolean))
             OR id = ANY(ARRAY(SELECT unnest(h.budget_ids) FROM budget_holds h
                               WHERE h.hold_id = ANY(ARRAY(SELECT (e.value->>'hold_id')::bigint
                                                           FROM jsonb_array_elements(p_items) e
                                                           WHERE e.value->>'op' = 'resolve'))))
          ORDER BY id FOR UPDATE) b;
    -- 3 and 4. What each item's checks need, in one query; then the checks, in order.
    FOR x IN
        SELECT e.ordinality::integer AS ix, it.*, decode(it.hash, 'hex') AS request_hash,
               prior.tr AS prior, (prior.tr).request_hash AS prior_hash,
               count(*) OVER (PARTITION BY it.key) > 1 AS key_twinned,
               it.op = 'resolve' AND count(*) OVER (PARTITION BY it.op, it.hold_id) > 1 AS hold_twinned,
               h.id AS h_id, h.phase AS h_phase, h.debit_account_id AS h_debit, h.credit_account_id AS h_credit,
               h.amount_micro AS h_amount, h.expires_at AS h_expires, h.kind AS h_kind, h.user_id AS h_user,
               h.description AS h_description,
               r.id IS NOT NULL AS h_resolved, link.budget_ids AS link_budgets, link.amount_micro AS link_amount,
               fit.ids AS budgets_to_fit
        FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e
        CROSS JOIN LATERAL jsonb_to_record(e.value) AS it(
            op text, key text, hash text, debit bigint, credit bigint, amount bigint, phase text, kind text,
            expires_at timestamptz, user_id bigint, description text, metadata jsonb, now timestamptz,
            budgeted boolean, api_key_id bigint, hold_id bigint, post bigint, expiring boolean, usage jsonb)
        -- Each lookup an index probe per item (LIMIT 1 keeps the planner from turning it into a
        -- join over the whole table, which a plan cached while the tables were small would do).
        LEFT JOIN LATERAL (SELECT t AS tr FROM transfers t WHERE t.idempotency_key = it.key LIMIT 1) prior ON true
        LEFT JOIN LATERAL (SELECT * FROM transfers t WHERE it.op = 'resolve' AND t.id = it.hold_id LIMIT 1) h ON true
        LEFT JOIN LATERAL (SELECT t.id FROM transfers t
                           WHERE it.op = 'resolve' AND t.pending_id = it.hold_id LIMIT 1) r ON true
        LEFT JOIN LATERAL (SELECT * FROM budget_holds l WHERE it.op = 'resolve' AND l.hold_id = it.hold_id
                           LIMIT 1) link ON true
        LEFT JOIN LATERAL (
            SELECT array_agg(b.id ORDER BY b.id) AS ids FROM budgets b
            WHERE it.op = 'move' AND it.phase = 'pending' AND it.budgeted
              AND b.user_id = it.user_id AND (b.api_key_id IS NULL OR b.api_key_id = it.api_key_id)) fit ON true
        ORDER BY e.ordinality
    LOOP
        <<one>>
        BEGIN
            -- Replayed or conflict: a transfer with the key, before the batch or earlier in it.
            IF x.prior_hash IS NOT NULL THEN
                a_found[x.ix] := x.prior;
                a_status[x.ix] := CASE WHEN x.prior_hash = x.request_hash THEN 'replayed' ELSE 'conflict' END;
                EXIT one;
            END IF;
            k := CASE WHEN x.key_twinned THEN array_position(t_keys, x.key) END;
            IF k IS NOT NULL THEN
                a_written[x.ix] := k;
                a_status[x.ix] := CASE WHEN (t_rows[k]).request_hash = x.request_hash THEN 'replayed'
                                       ELSE 'conflict' END;
                EXIT one;
            END IF;
            IF x.op = 'move' THEN
                v_posting := x.phase = 'posted';
                -- As ledger_move_within_budgets: the budgets first (by id), then ledger_move's checks.
                fit := '{}';
                fit_ids := '{}';
                IF x.budgets_to_fit IS NOT NULL THEN
                    FOREACH budget_id IN ARRAY x.budgets_to_fit LOOP
                        bix := array_position(b_ids, budget_id);
                        CONTINUE WHEN bix IS NULL;  -- created after step 2: not this batch's to charge
                        fit := fit || bix;
                        fit_ids := fit_ids || budget_id;
                        IF (CASE WHEN b_starts[bix] >= budget_window(b_periods[bix], x.now)
                                 THEN b_spent[bix] ELSE 0 END)::numeric + b_held[bix] + x.amount > b_limits[bix] THEN
                            a_status[x.ix] := 'limit_exceeded';
                            a_detail[x.ix] := concat_ws(':', CASE WHEN b_is_key[bix] THEN 'key' ELSE 'user' END,
                                                        b_periods[bix], b_limits[bix]);
                            EXIT one;
                        END IF;
                    END LOOP;
                END IF;
                IF x.amount > 1000000000000000 THEN  -- ledger.money.AMOUNT_MAX_MICRO
                    a_status[x.ix] := 'amount_out_of_range';
                    a_detail[x.ix] := 'amount';
                    EXIT one;
                END IF;
                d := array_position(a_ids, x.debit);
                c := array_position(a_ids, x.credit);
                IF d IS NULL OR c IS NULL THEN
                    a_status[x.ix] := 'unknown_account';
                    a_detail[x.ix] := concat_ws(',', CASE WHEN d IS NULL THEN x.debit::text END,
                                                CASE WHEN c IS NULL THEN x.credit::text END);
                    EXIT one;
                END IF;
                IF (CASE WHEN v_posting THEN a_debits_posted[d] ELSE a_debits_pending[d] END)::numeric
                       + x.amount > 4000000000000000000
                   OR (CASE WHEN v_posting THEN a_credits_posted[c] ELSE a_credits_pending[c] END)::numeric
                       + x.amount > 4000000000000000000 THEN
                    a_status[x.ix] := 'amount_out_of_range';
                    a_detail[x.ix] := 'account_total';
                    EXIT one;
                END IF;
                IF a_kinds[c] = 'user'
                   AND a_credits_posted[c]::numeric + a_credits_pending[c] - a_debits_posted[c] + x.amount
                       > 10000000000000000 THEN
                    a_status[x.ix] := 'amount_out_of_range';
                    a_detail[x.ix] := 'user_balance';
                    EXIT one;
                END IF;
                IF a_kinds[d] = 'user'
                   AND a_credits_posted[d]::numeric - a_debits_posted[d] - a_debits_pending[d] - x.amount
                       - (CASE WHEN x.kind = 'chargeback' THEN 0 ELSE a_owed[d] END) < -a_overdrafts[d] THEN
                    a_status[x.ix] := 'insufficient_balance';
                    EXIT one;
                END IF;
                -- Accepted: its row, its budgets charged, the sums.
                t_rows := t_rows || ROW(NULL, x.key, x.request_hash, a_ids[d], a_ids[c], x.amount, x.phase, x.kind,
                                        NULL, x.expires_at, x.user_id, x.description, x.metadata, x.now)::transfers;
                t_keys := t_keys || x.key;
                a_written[x.ix] := cardinality(t_keys);
                IF cardinality(fit) > 0 THEN
                    FOREACH bix IN ARRAY fit LOOP
                        v_window := budget_window(b_periods[bix], x.now);
                        b_spent[bix] := CASE WHEN b_starts[bix] >= v_window THEN b_spent[bix] ELSE 0 END;
                        b_starts[bix] := greatest(b_starts[bix], v_window);
                        b_held[bix] := b_held[bix] + x.amount;
                        b_changed[bix] := true;
                    END LOOP;
                    l_positions := l_positions || cardinality(t_keys);
                    l_budgets := l_budgets || fit_ids::text;
                    l_amounts := l_amounts || x.amount;
                END IF;
                IF v_posting THEN
                    a_debits_posted[d] := a_debits_posted[d] + x.amount;
                    a_credits_posted[c] := a_credits_posted[c] + x.amount;
                ELSE
                    a_debits_pending[d] := a_debits_pending[d] + x.amount;
                    a_credits_pending[c] := a_credits_pending[c] + x.amount;
                END IF;
            ELSE
                v_posting := x.phase = 'post_pending';
                IF x.h_id IS NULL OR x.h_phase <> 'pending' THEN
                    a_status[x.ix] := 'hold_not_found';
                    EXIT one;
                END IF;
                d := array_position(a_ids, x.h_debit);
                c := array_position(a_ids, x.h_credit);
                IF d IS NULL OR c IS NULL THEN
                    -- An account of the hold is not locked: either the hold committed after step 1
                    -- (the caller sends the item again) or the account does not exist. Told apart
                    -- after the loop, in one statement for all such items (see there); the item
                    -- writes nothing either way. Its accounts wait in the detail meanwhile.
                    a_status[x.ix] := 'retry';
                    a_detail[x.ix] := concat_ws(',', x.h_debit, x.h_credit);
                    EXIT one;
                END IF;
                IF x.h_resolved OR (x.hold_twinned AND x.h_id = ANY(resolved)) THEN
                    a_status[x.ix] := 'hold_resolved';
                    EXIT one;
                END IF;
                v_posted := CASE WHEN v_posting THEN x.post ELSE 0 END;
                IF v_posting THEN
                    IF v_posted IS NULL OR v_posted < 0 OR v_posted > x.h_amount THEN
                        a_status[x.ix] := 'invalid_amount';
                        a_detail[x.ix] := x.h_amount::text;
                        EXIT one;
                    END IF;
                    IF x.h_expires <= x.now AND NOT x.expiring THEN
                        a_status[x.ix] := 'hold_expired';
                        EXIT one;
                    END IF;
                    IF greatest(a_debits_posted[d], a_credits_posted[c])::numeric + v_posted
                       > 4000000000000000000 THEN
                        a_status[x.ix] := 'amount_out_of_range';
                        a_detail[x.ix] := 'account_total';
                        EXIT one;
                    END IF;
                END IF;
                t_rows := t_rows || ROW(NULL, x.key, x.request_hash, x.h_debit, x.h_credit,
                                        CASE WHEN v_posting THEN v_posted ELSE x.h_amount END, x.phase, x.h_kind,
                                        x.h_id, NULL, x.h_user, x.h_description, x.metadata, x.now)::transfers;
                t_keys := t_keys || x.key;
                a_written[x.ix] := cardinality(t_keys);
                resolved := resolved || x.h_id;
                IF x.usage IS NOT NULL THEN  -- the call's usage row, in the transaction of its charge
                    usages := usages || x.usage;
                END IF;
                -- The hold's budgets give back what it held and count what was posted, in the window
                -- of the resolution (as the trigger budget_hold_resolved does for other resolutions).
                IF x.h_kind = 'usage' AND x.link_budgets IS NOT NULL THEN
                    l_dropped := l_dropped || x.h_id;
                    FOREACH budget_id IN ARRAY x.link_budgets LOOP
                        bix := array_position(b_ids, budget_id);
                        CONTINUE WHEN bix IS NULL;  -- a budget deleted meanwhile
                        v_window := budget_window(b_periods[bix], x.now);
                        b_spent[bix] := CASE WHEN b_starts[bix] >= v_window THEN b_spent[bix] ELSE 0 END
                                        + CASE WHEN v_posting THEN v_posted ELSE 0 END;
                        b_starts[bix] := greatest(b_starts[bix], v_window);
                        b_held[bix] := b_held[bix] - x.link_amount;
                        b_changed[bix] := true;
                    END LOOP;
                END IF;
                a_debits_posted[d] := a_debits_posted[d] + v_posted;
                a_credits_posted[c] := a_credits_posted[c] + v_posted;
                a_debits_pending[d] := a_debits_pending[d] - x.h_amount;
                a_credits_pending[c] := a_credits_pending[c] - x.h_amount;
            END IF;
            a_changed[d] := true;
            a_changed[c] := true;
            a_status[x.ix] := 'ok';
        END one;
    END LOOP;
    -- 4b. (0017) The resolutions whose hold names an account that was not locked. If the account
    --     does not exist at all (a hold written around the ledger: the transfers keep no foreign key
    --     to accounts since 0016), the answer is ledger_resolve's: 'unknown_account', the missing
    --     ids in the detail, never 'retry' (which ledger.Batcher would send again forever). Only a
    --     hold whose accounts all exist but committed after step 1 stays 'retry'. One statement,
    --     run only when the batch has such an item.
    IF 'retry' = ANY(a_status) THEN
        SELECT array_agg(CASE WHEN s.status = 'retry' AND m.missing IS NOT NULL THEN 'unknown_account'
                              ELSE s.status END ORDER BY s.ix),
               array_agg(CASE WHEN s.status = 'retry' THEN m.missing ELSE s.detail END ORDER BY s.ix)
        INTO a_status, a_detail
        FROM unnest(a_status, a_detail) WITH ORDINALITY AS s(status, detail, ix)
        LEFT JOIN LATERAL (
            SELECT string_agg(w::text, ',' ORDER BY w) AS missing
            FROM unnest(string_to_array(s.detail, ',')::bigint[]) AS w
            WHERE s.status = 'retry' AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = w)) m ON true;
    END IF;
    -- 5. The writes, one statement each.
    IF cardinality(t_keys) > 0 THEN
        IF cardinality(resolved) > 0 THEN  -- the trigger leaves the resolutions' budgets to us
            PERFORM set_config('tollgate.batch_budgets', 'on', true);
        END IF;
        WITH rows AS (
            INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id, amount_micro,
                                   phase, kind, pending_id, expires_at, user_id, description, metadata, created_at)
            SELECT r.idempotency_key, r.request_hash, r.debit_account_id, r.credit_account_id, r.amount_micro,
                   r.phase, r.kind, r.pending_id, r.expires_at, r.user_id, r.description, r.metadata, r.created_at
            FROM unnest(t_rows) AS r
            RETURNING transfers AS t, id, idempotency_key)
        SELECT array_agg(rows.t ORDER BY rows.id), array_agg(rows.idempotency_key ORDER BY rows.id)
        INTO written, written_keys FROM rows;
        IF cardinality(resolved) > 0 THEN
            PERFORM set_config('tollgate.batch_budgets', 'off', true);
        END IF;
        IF written_keys IS DISTINCT FROM t_keys THEN  -- ids follow the rows' order; checked, never assumed
            RAISE EXCEPTION 'ledger_batch: written rows out of order';
        END IF;
    END IF;
    IF cardinality(usages) > 0 THEN
        INSERT INTO ai_usage (request_id, api_key_id, user_id, provider, model, input_tokens, cached_input_tokens,
                              output_tokens, cost_micro, charged_micro, hold_transfer_id, outcome, stream,
                              usage_source, latency_ms, upstream_ms, created_at)
        SELECT r.request_id, r.api_key_id, r.user_id, r.provider, r.model, r.input_tokens, r.cached_input_tokens,
               r.output_tokens, r.cost_micro, r.charged_micro, r.hold_transfer_id, r.outcome, r.stream,
               r.usage_source, r.latency_ms, r.upstream_ms, r.created_at
        FROM unnest(usages) AS u(body), jsonb_populate_record(NULL::ai_usage, u.body) AS r;
    END IF;
    IF cardinality(l_dropped) > 0 THEN
        DELETE FROM budget_holds WHERE hold_id = ANY(l_dropped);
    END IF;
    IF cardinality(l_positions) > 0 THEN
        INSERT INTO budget_holds (hold_id, budget_ids, amount_micro)
        SELECT written[p].id, ids::bigint[], amount FROM unnest(l_positions, l_budgets, l_amounts) AS l(p, ids, amount);
    END IF;
    IF true = ANY(b_changed) THEN
        UPDATE budgets b SET spent_micro = s.spent, held_micro = s.held, window_start = s.start
        FROM unnest(b_ids, b_spent, b_held, b_starts, b_changed) AS s(id, spent, held, start, touched)
        WHERE b.id = s.id AND s.touched;
    END IF;
    UPDATE accounts a SET debits_posted = s.new_debits_posted, credits_posted = s.new_credits_posted,
                          debits_pending = s.new_debits_pending, credits_pending = s.new_credits_pending
    FROM unnest(a_ids, a_debits_posted, a_credits_posted, a_debits_pending, a_credits_pending, a_changed)
         AS s(account_id, new_debits_posted, new_credits_posted, new_debits_pending, new_credits_pending, touched)
    WHERE a.id = s.account_id AND s.touched;
    -- The answers, in the items' order.
    RETURN QUERY
        SELECT (s.ix - 1)::integer, s.status, s.detail,
               CASE WHEN s.status NOT IN ('ok', 'replayed', 'conflict') THEN NULL
                    WHEN s.pos IS NOT NULL THEN written[s.pos]
                    ELSE a_found[s.ix] END
        FROM unnest(a_status, a_detail, a_written) WITH ORDINALITY AS s(status, detail, pos, ix);
END $$;
