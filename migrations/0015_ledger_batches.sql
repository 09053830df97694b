-- Group commit for the ledger (issue 13, decision 0021): the holds and resolutions of concurrent
-- calls, gathered by ledger/batches.py, go to PostgreSQL as one call of ledger_batch, one
-- transaction. Each item is checked and written as ledger_move / ledger_move_within_budgets /
-- ledger_resolve would (same order of checks, same statuses), in the order given, and answered with
-- one row: (item_index, status, detail, transfer). Refusals write nothing and touch no other item.
--
-- What changes is how the work is done, not the rules:
--   * Locks: every account the batch touches (the items' own, and the accounts of the holds it
--     resolves) is locked up front in one statement, `ORDER BY id FOR UPDATE`, then every budget
--     the batch may charge or give back, by id. Accounts before budgets, each by id: the order every
--     ledger function and the budget trigger use, so a batch never waits in a cycle with another
--     batch (of another worker) nor with a direct move, resolution or expiry sweep.
--   * Account sums: read once under those locks and carried in arrays while the items run; each
--     item's checks (overdraft, debt, bounds) see the sums the earlier items left. The accounts are
--     written once at the end, one UPDATE for the whole batch: the revenue row, credited by every
--     call, gets one new version per batch instead of two per call (decision 0021).
--   * Isolation: each item runs in its own BEGIN ... EXCEPTION block (a subtransaction). An error no
--     check foresaw rolls back that item only, which answers status 'error' (detail: SQLSTATE and
--     message); the arrays are advanced only after an item's last write succeeded.
--
-- An item (jsonb object):
--   {"op": "move", "key", "hash" (hex), "debit", "credit", "amount", "phase" ('posted'|'pending'),
--    "kind", "expires_at", "user_id", "description", "metadata", "now",
--    "budgeted" (check and charge the budgets of user_id and api_key_id, as ledger_move_within_budgets),
--    "api_key_id"}
--   {"op": "resolve", "key", "hash", "hold_id", "phase" ('post_pending'|'void_pending'), "post",
--    "expiring", "metadata", "now", "usage" (optional: an ai_usage row, written when the item is ok)}
CREATE FUNCTION ledger_batch(p_items jsonb)
RETURNS TABLE (item_index integer, status text, detail text, transfer transfers)
LANGUAGE plpgsql AS $$
DECLARE
    item jsonb;
    a_ids bigint[];
    a_kinds text[];
    a_overdrafts bigint[];
    a_owed bigint[];
    a_debits_posted bigint[];
    a_credits_posted bigint[];
    a_debits_pending bigint[];
    a_credits_pending bigint[];
    a_changed boolean[];
    d integer;
    c integer;
    v_key text;
    v_hash bytea;
    v_amount bigint;
    v_now timestamptz;
    v_posting boolean;
    v_posted bigint;
    hold_row transfers;
    budget budgets;
    charged bigint[];
BEGIN
    -- 1. Lock every account of the batch, by id.
    WITH elements AS (SELECT value AS i FROM jsonb_array_elements(p_items)),
    holds AS (SELECT t.debit_account_id, t.credit_account_id FROM transfers t
              WHERE t.id IN (SELECT (i->>'hold_id')::bigint FROM elements WHERE i->>'op' = 'resolve')),
    wanted AS (SELECT (i->>'debit')::bigint AS id FROM elements WHERE i->>'op' = 'move'
               UNION SELECT (i->>'credit')::bigint FROM elements WHERE i->>'op' = 'move'
               UNION SELECT debit_account_id FROM holds
               UNION SELECT credit_account_id FROM holds)
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}'), array_agg(l.kind ORDER BY l.id),
           array_agg(l.overdraft_micro ORDER BY l.id), array_agg(l.owed_micro ORDER BY l.id),
           array_agg(l.debits_posted ORDER BY l.id), array_agg(l.credits_posted ORDER BY l.id),
           array_agg(l.debits_pending ORDER BY l.id), array_agg(l.credits_pending ORDER BY l.id),
           array_agg(false)
    INTO a_ids, a_kinds, a_overdrafts, a_owed, a_debits_posted, a_credits_posted, a_debits_pending,
         a_credits_pending, a_changed
    FROM (SELECT * FROM accounts WHERE id IN (SELECT id FROM wanted) ORDER BY id FOR UPDATE) l;
    -- 2. Then every budget the batch may charge (its budgeted holds' users) or give back (the
    --    budgets of the holds it resolves), by id.
    PERFORM 1 FROM budgets b
    WHERE b.user_id IN (SELECT (e.value->>'user_id')::bigint FROM jsonb_array_elements(p_items) e
                        WHERE e.value->>'op' = 'move' AND (e.value->>'budgeted')::boolean)
       OR b.id IN (SELECT unnest(h.budget_ids) FROM budget_holds h
                   WHERE h.hold_id IN (SELECT (e.value->>'hold_id')::bigint FROM jsonb_array_elements(p_items) e
                                       WHERE e.value->>'op' = 'resolve'))
    ORDER BY b.id FOR UPDATE;
    -- 3. The items, in order.
    FOR item, item_index IN SELECT value, (ordinality - 1)::integer
                            FROM jsonb_array_elements(p_items) WITH ORDINALITY LOOP
        status := NULL;
        detail := NULL;
        transfer := NULL;
        BEGIN
            <<one>>
            BEGIN
                v_key := item->>'key';
                v_hash := decode(item->>'hash', 'hex');
                v_now := (item->>'now')::timestamptz;
                SELECT * INTO transfer FROM transfers WHERE idempotency_key = v_key;
                IF FOUND THEN
                    status := CASE WHEN transfer.request_hash = v_hash THEN 'replayed' ELSE 'conflict' END;
                    EXIT one;
                END IF;
                IF item->>'op' = 'move' THEN
                    v_amount := (item->>'amount')::bigint;
                    v_posting := item->>'phase' = 'posted';
                    -- As ledger_move_within_budgets: the budgets first, then ledger_move's checks.
                    charged := '{}';
                    IF item->>'phase' = 'pending' AND (item->>'budgeted')::boolean THEN
                        FOR budget IN SELECT * FROM budgets WHERE user_id = (item->>'user_id')::bigint
                                      AND (api_key_id IS NULL OR api_key_id = (item->>'api_key_id')::bigint)
                                      ORDER BY id FOR UPDATE LOOP
                            IF (CASE WHEN budget.window_start >= budget_window(budget.period, v_now)
                                     THEN budget.spent_micro ELSE 0 END)::numeric + budget.held_micro + v_amount
                               > budget.limit_micro THEN
                                status := 'limit_exceeded';
                                detail := concat_ws(':', CASE WHEN budget.api_key_id IS NULL THEN 'user' ELSE 'key' END,
                                                    budget.period, budget.limit_micro);
                                EXIT one;
                            END IF;
                            charged := charged || budget.id;
                        END LOOP;
                    END IF;
                    IF v_amount > 1000000000000000 THEN  -- ledger.money.AMOUNT_MAX_MICRO
                        status := 'amount_out_of_range';
                        detail := 'amount';
                        EXIT one;
                    END IF;
                    d := array_position(a_ids, (item->>'debit')::bigint);
                    c := array_position(a_ids, (item->>'credit')::bigint);
                    IF d IS NULL OR c IS NULL THEN
                        status := 'unknown_account';
                        detail := concat_ws(',', CASE WHEN d IS NULL THEN item->>'debit' END,
                                            CASE WHEN c IS NULL THEN item->>'credit' END);
                        EXIT one;
                    END IF;
                    IF (CASE WHEN v_posting THEN a_debits_posted[d] ELSE a_debits_pending[d] END)::numeric
                           + v_amount > 4000000000000000000
                       OR (CASE WHEN v_posting THEN a_credits_posted[c] ELSE a_credits_pending[c] END)::numeric
                           + v_amount > 4000000000000000000 THEN
                        status := 'amount_out_of_range';
                        detail := 'account_total';
                        EXIT one;
                    END IF;
                    IF a_kinds[c] = 'user'
                       AND a_credits_posted[c]::numeric + a_credits_pending[c] - a_debits_posted[c] + v_amount
                           > 10000000000000000 THEN
                        status := 'amount_out_of_range';
                        detail := 'user_balance';
                        EXIT one;
                    END IF;
                    IF a_kinds[d] = 'user'
                       AND a_credits_posted[d]::numeric - a_debits_posted[d] - a_debits_pending[d] - v_amount
                           - (CASE WHEN item->>'kind' = 'chargeback' THEN 0 ELSE a_owed[d] END)
                           < -a_overdrafts[d] THEN
                        status := 'insufficient_balance';
                        EXIT one;
                    END IF;
                    INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,
                                           amount_micro, phase, kind, pending_id, expires_at, user_id,
                                           description, metadata, created_at)
                    VALUES (v_key, v_hash, a_ids[d], a_ids[c], v_amount, item->>'phase', item->>'kind', NULL,
                            (item->>'expires_at')::timestamptz, (item->>'user_id')::bigint,
                            item->>'description', item->'metadata', v_now)
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING * INTO transfer;
                    IF NOT FOUND THEN  -- another transaction took the key while we held our locks
                        SELECT * INTO STRICT transfer FROM transfers WHERE idempotency_key = v_key;
                        status := CASE WHEN transfer.request_hash = v_hash THEN 'replayed' ELSE 'conflict' END;
                        EXIT one;
                    END IF;
                    IF cardinality(charged) > 0 THEN
                        UPDATE budgets SET
                            spent_micro = CASE WHEN window_start >= budget_window(period, v_now)
                                               THEN spent_micro ELSE 0 END,
                            window_start = greatest(window_start, budget_window(period, v_now)),
                            held_micro = held_micro + v_amount
                        WHERE id = ANY(charged);
                        INSERT INTO budget_holds (hold_id, budget_ids, amount_micro)
                        VALUES (transfer.id, charged, v_amount);
                    END IF;
                    -- Last, after every write of the item succeeded: the running sums.
                    IF v_posting THEN
                        a_debits_posted[d] := a_debits_posted[d] + v_amount;
                        a_credits_posted[c] := a_credits_posted[c] + v_amount;
                    ELSE
                        a_debits_pending[d] := a_debits_pending[d] + v_amount;
                        a_credits_pending[c] := a_credits_pending[c] + v_amount;
                    END IF;
                ELSE
                    v_posting := item->>'phase' = 'post_pending';
                    SELECT * INTO hold_row FROM transfers WHERE id = (item->>'hold_id')::bigint;
                    IF NOT FOUND OR hold_row.phase <> 'pending' THEN
                        status := 'hold_not_found';
                        EXIT one;
                    END IF;
                    d := array_position(a_ids, hold_row.debit_account_id);
                    c := array_position(a_ids, hold_row.credit_account_id);
                    IF d IS NULL OR c IS NULL THEN
                        -- A hold committed after this batch took its locks: the caller sends it again.
                        status := 'retry';
                        EXIT one;
                    END IF;
                    IF EXISTS (SELECT 1 FROM transfers WHERE pending_id = hold_row.id) THEN
                        status := 'hold_resolved';
                        EXIT one;
                    END IF;
                    v_posted := CASE WHEN v_posting THEN (item->>'post')::bigint ELSE 0 END;
                    IF v_posting THEN
                        IF v_posted IS NULL OR v_posted < 0 OR v_posted > hold_row.amount_micro THEN
                            status := 'invalid_amount';
                            detail := hold_row.amount_micro::text;
                            EXIT one;
                        END IF;
                        IF hold_row.expires_at <= v_now AND NOT (item->>'expiring')::boolean THEN
                            status := 'hold_expired';
                            EXIT one;
                        END IF;
                        IF greatest(a_debits_posted[d], a_credits_posted[c])::numeric + v_posted
                           > 4000000000000000000 THEN
                            status := 'amount_out_of_range';
                            detail := 'account_total';
                            EXIT one;
                        END IF;
                    END IF;
                    INSERT INTO transfers (idempotency_key, request_hash, debit_account_id, credit_account_id,
                                           amount_micro, phase, kind, pending_id, expires_at, user_id,
                                           description, metadata, created_at)
                    VALUES (v_key, v_hash, hold_row.debit_account_id, hold_row.credit_account_id,
                            CASE WHEN v_posting THEN v_posted ELSE hold_row.amount_micro END, item->>'phase',
                            hold_row.kind, hold_row.id, NULL, hold_row.user_id, hold_row.description,
                            item->'metadata', v_now)
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING * INTO transfer;
                    IF NOT FOUND THEN
                        SELECT * INTO STRICT transfer FROM transfers WHERE idempotency_key = v_key;
                        status := CASE WHEN transfer.request_hash = v_hash THEN 'replayed' ELSE 'conflict' END;
                        EXIT one;
                    END IF;
                    IF item ? 'usage' THEN  -- the call's usage row, in the transaction of its charge
                        INSERT INTO ai_usage (request_id, api_key_id, user_id, provider, model, input_tokens,
                                              cached_input_tokens, output_tokens, cost_micro, charged_micro,
                                              hold_transfer_id, outcome, stream, usage_source, latency_ms,
                                              upstream_ms, created_at)
                        SELECT request_id, api_key_id, user_id, provider, model, input_tokens, cached_input_tokens,
                               output_tokens, cost_micro, charged_micro, hold_transfer_id, outcome, stream,
                               usage_source, latency_ms, upstream_ms, created_at
                        FROM jsonb_populate_record(NULL::ai_usage, item->'usage');
                    END IF;
                    a_debits_posted[d] := a_debits_posted[d] + v_posted;
                    a_credits_posted[c] := a_credits_posted[c] + v_posted;
                    a_debits_pending[d] := a_debits_pending[d] - hold_row.amount_micro;
                    a_credits_pending[c] := a_credits_pending[c] - hold_row.amount_micro;
                END IF;
                a_changed[d] := true;
                a_changed[c] := true;
                status := 'ok';
            END one;
        EXCEPTION WHEN OTHERS THEN
            status := 'error';
            detail := SQLSTATE || ': ' || SQLERRM;
            transfer := NULL;
        END;
        RETURN NEXT;
    END LOOP;
    -- 4. The accounts, once: what the items left in the arrays.
    UPDATE accounts a SET debits_posted = s.new_debits_posted, credits_posted = s.new_credits_posted,
                          debits_pending = s.new_debits_pending, credits_pending = s.new_credits_pending
    FROM unnest(a_ids, a_debits_posted, a_credits_posted, a_debits_pending, a_credits_pending, a_changed)
         AS s(account_id, new_debits_posted, new_credits_posted, new_debits_pending, new_credits_pending, touched)
    WHERE a.id = s.account_id AND s.touched;
END $$;
