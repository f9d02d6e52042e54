/*-------------------------------------------------------------------------
 *
 * pgbank_errcodes.h
 *		The project's SQLSTATEs: one class of our own, "PB".
 *
 * Class PB is implementation-defined (SQL reserves classes starting with
 * 0-4 and A-H for the standard) and unused by PostgreSQL.  Each code is listed
 * in the README with its meaning and the HTTP status it maps to.  Codes are
 * never reused for another meaning.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBANK_ERRCODES_H
#define PGBANK_ERRCODES_H

#include "utils/elog.h"

#define PGB_SQLSTATE(a, b, c) MAKE_SQLSTATE('P', 'B', a, b, c)

/* declines: state-dependent refusals, recorded as failed transfers */
#define ERRCODE_PGB_INSUFFICIENT_FUNDS		PGB_SQLSTATE('0', '0', '1')
#define ERRCODE_PGB_ACCOUNT_FROZEN			PGB_SQLSTATE('0', '0', '2')
#define ERRCODE_PGB_ACCOUNT_CLOSED			PGB_SQLSTATE('0', '0', '3')
/* bad requests */
#define ERRCODE_PGB_CURRENCY_MISMATCH		PGB_SQLSTATE('0', '0', '4')
#define ERRCODE_PGB_IDEMPOTENCY_CONFLICT	PGB_SQLSTATE('0', '0', '5')
#define ERRCODE_PGB_INVALID_AMOUNT			PGB_SQLSTATE('0', '0', '6')
#define ERRCODE_PGB_AMOUNT_OUT_OF_RANGE		PGB_SQLSTATE('0', '0', '7')
#define ERRCODE_PGB_UNKNOWN_CURRENCY		PGB_SQLSTATE('0', '0', '8')
#define ERRCODE_PGB_ACCOUNT_NOT_FOUND		PGB_SQLSTATE('0', '0', '9')
#define ERRCODE_PGB_TRANSFER_NOT_FOUND		PGB_SQLSTATE('0', '1', '0')
#define ERRCODE_PGB_TOO_MANY_ACCOUNTS		PGB_SQLSTATE('0', '1', '1')
#define ERRCODE_PGB_ACCOUNT_NOT_EMPTY		PGB_SQLSTATE('0', '1', '2')
#define ERRCODE_PGB_OPEN_HOLDS				PGB_SQLSTATE('0', '1', '3')
#define ERRCODE_PGB_HOLD_NOT_PENDING		PGB_SQLSTATE('0', '1', '4')
#define ERRCODE_PGB_HOLD_EXPIRED			PGB_SQLSTATE('0', '1', '5')
#define ERRCODE_PGB_CAPTURE_EXCEEDS_HOLD	PGB_SQLSTATE('0', '1', '6')
#define ERRCODE_PGB_NOT_REVERSIBLE			PGB_SQLSTATE('0', '1', '7')
#define ERRCODE_PGB_SAME_ACCOUNT			PGB_SQLSTATE('0', '1', '8')
#define ERRCODE_PGB_INVALID_ACCOUNT_TYPE	PGB_SQLSTATE('0', '1', '9')
#define ERRCODE_PGB_INVALID_IDEMPOTENCY_KEY PGB_SQLSTATE('0', '2', '0')
#define ERRCODE_PGB_CUSTOMER_NOT_FOUND		PGB_SQLSTATE('0', '2', '1')
#define ERRCODE_PGB_NULL_ARGUMENT			PGB_SQLSTATE('0', '2', '2')
#define ERRCODE_PGB_INVALID_ARGUMENT		PGB_SQLSTATE('0', '2', '3')
#define ERRCODE_PGB_EMAIL_TAKEN				PGB_SQLSTATE('0', '2', '4')
#define ERRCODE_PGB_ISOLATION				PGB_SQLSTATE('0', '2', '5')
#define ERRCODE_PGB_INVALID_BATCH			PGB_SQLSTATE('0', '2', '6')
#define ERRCODE_PGB_BATCH_TOO_LARGE			PGB_SQLSTATE('0', '2', '7')
/* the database refusing a write that breaks an invariant */
#define ERRCODE_PGB_IMMUTABLE				PGB_SQLSTATE('0', '3', '0')
#define ERRCODE_PGB_INVALID_TRANSITION		PGB_SQLSTATE('0', '3', '1')
#define ERRCODE_PGB_UNBALANCED_TRANSFER		PGB_SQLSTATE('0', '3', '2')
/* a decline that could not be recorded: retry */
#define ERRCODE_PGB_INVALID_TOKEN			PGB_SQLSTATE('0', '4', '0')
#define ERRCODE_PGB_NOT_AUTHENTICATED		PGB_SQLSTATE('0', '4', '1')
#define ERRCODE_PGB_WRONG_ROLE				PGB_SQLSTATE('0', '4', '2')
#define ERRCODE_PGB_INVALID_API_KEY			PGB_SQLSTATE('0', '4', '3')
#define ERRCODE_PGB_ALREADY_AUTHENTICATED	PGB_SQLSTATE('0', '4', '4')
#define ERRCODE_PGB_WEAK_PASSWORD			PGB_SQLSTATE('0', '4', '5')
#define ERRCODE_PGB_KYC_REQUIRED			PGB_SQLSTATE('0', '4', '6')
#define ERRCODE_PGB_INVALID_MFA_CODE		PGB_SQLSTATE('0', '4', '7')
#define ERRCODE_PGB_MFA_STATE				PGB_SQLSTATE('0', '4', '8')
#define ERRCODE_PGB_DATA_ERASED				PGB_SQLSTATE('0', '4', '9')
#define ERRCODE_PGB_API_KEY_NOT_FOUND		PGB_SQLSTATE('0', '5', '0')
#define ERRCODE_PGB_AUDIT_BROKEN			PGB_SQLSTATE('0', '5', '2')
/* the card vault: messages never carry the card number */
#define ERRCODE_PGB_INVALID_CARD_NUMBER		PGB_SQLSTATE('0', '6', '0')
#define ERRCODE_PGB_INVALID_CARD_EXPIRY		PGB_SQLSTATE('0', '6', '1')
#define ERRCODE_PGB_CARD_EXPIRED			PGB_SQLSTATE('0', '6', '2')
#define ERRCODE_PGB_CARD_NOT_FOUND			PGB_SQLSTATE('0', '6', '3')
/* interest and fee runs */
#define ERRCODE_PGB_PERIOD_NOT_ENDED		PGB_SQLSTATE('0', '6', '4')
#define ERRCODE_PGB_PERIOD_CLOSED			PGB_SQLSTATE('0', '6', '5')
#define ERRCODE_PGB_PERIOD_NOT_READY		PGB_SQLSTATE('0', '6', '6')
/* background jobs */
#define ERRCODE_PGB_UNKNOWN_JOB				PGB_SQLSTATE('0', '8', '0')
#define ERRCODE_PGB_INVALID_JOB_ARGUMENTS	PGB_SQLSTATE('0', '8', '1')
#define ERRCODE_PGB_JOB_KEY_REUSED			PGB_SQLSTATE('0', '8', '2')
#define ERRCODE_PGB_JOB_NOT_FOUND			PGB_SQLSTATE('0', '8', '3')
#define ERRCODE_PGB_JOB_NOT_DEAD			PGB_SQLSTATE('0', '8', '4')
/* risk: fraud screening declines (recorded like PB001), limits, review queue */
#define ERRCODE_PGB_RISK_MAX_AMOUNT			PGB_SQLSTATE('0', '7', '0')
#define ERRCODE_PGB_DAILY_LIMIT				PGB_SQLSTATE('0', '7', '1')
#define ERRCODE_PGB_MONTHLY_LIMIT			PGB_SQLSTATE('0', '7', '2')
#define ERRCODE_PGB_RISK_VELOCITY			PGB_SQLSTATE('0', '7', '3')
#define ERRCODE_PGB_RISK_NEW_PAYEE			PGB_SQLSTATE('0', '7', '4')
#define ERRCODE_PGB_RISK_UNUSUAL_AMOUNT		PGB_SQLSTATE('0', '7', '5')
#define ERRCODE_PGB_REVIEW_DECIDED			PGB_SQLSTATE('0', '7', '6')
#define ERRCODE_PGB_REVIEW_EXPIRED			PGB_SQLSTATE('0', '7', '7')
#define ERRCODE_PGB_LIMIT_BELOW_BALANCE		PGB_SQLSTATE('0', '7', '8')
#define ERRCODE_PGB_DECLINE_NOT_RECORDED	PGB_SQLSTATE('0', '9', '0')

#endif							/* PGBANK_ERRCODES_H */
