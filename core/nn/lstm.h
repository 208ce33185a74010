/* One LSTM cell step, PyTorch gate order (i, f, g, o):
 *   gates = x W_ih^T + b_ih + h W_hh^T + b_hh        (N, 4H)
 *   c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(c') */
#ifndef DP_NN_LSTM_H
#define DP_NN_LSTM_H

/* h_out, c_out (N,H); cache (N, 5H): activated gates i,f,g,o and tanh(c'), for
 * backward; x (N,I); h_prev, c_prev (N,H) (NULL: zeros); w_ih (4H,I);
 * w_hh (4H,H); b_ih, b_hh (4H) or NULL. */
void nn_lstm_cell_forward(float *h_out, float *c_out, float *cache, const float *x,
                          const float *h_prev, const float *c_prev, const float *w_ih,
                          const float *w_hh, const float *b_ih, const float *b_hh, int n, int in,
                          int hid);
/* dh_out, dc_out (N,H): gradients flowing into this step's outputs (dc_out may
 * be NULL). Accumulates into dx, dh_prev, dc_prev, dw_ih, dw_hh, db_ih, db_hh
 * (each may be NULL). ws: N*4H floats. */
void nn_lstm_cell_backward(float *dx, float *dh_prev, float *dc_prev, float *dw_ih, float *dw_hh,
                           float *db_ih, float *db_hh, const float *dh_out, const float *dc_out,
                           const float *cache, const float *x, const float *h_prev,
                           const float *c_prev, const float *w_ih, const float *w_hh, int n, int in,
                           int hid, float *ws);

#endif
